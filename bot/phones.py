"""Phone numbers as one person has one: every SMS/WhatsApp address that enters (webhooks,
`patients enroll`, the terminal chat) becomes E.164 ("+919800000031") with Google's
libphonenumber, national forms read in the configured region (`phones.default_region`).
Telegram chat ids and simulator ids are not phone numbers and pass unchanged.
Imports phonenumbers and bot.errors only.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from bot.errors import CarebridgeError

PHONE_CHANNELS = frozenset({"sms", "whatsapp", "voice", "ussd"})
_WHY = {
    NumberParseException.INVALID_COUNTRY_CODE: "no country code; start it with + and the code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_LONG: "too long",
}


class PhoneError(CarebridgeError, ValueError):
    """A phone number that cannot be used; the message names it and says why."""


def is_region(region: str) -> bool:
    """Whether `region` is a region libphonenumber knows ("IN", "GB", "US", ...)."""
    return region in phonenumbers.SUPPORTED_REGIONS


def normalise(raw: str, region: str) -> str:
    """`raw` as E.164, or PhoneError naming the number and what is wrong with it.

    "09800000031" in region IN -> "+919800000031"; "+91 98000 00031" -> "+919800000031";
    "whatsapp:+91..." loses its prefix. Letters, short codes and numbers that cannot exist
    in their country ("98000") are refused.
    """
    text = raw.strip().removeprefix("whatsapp:")
    if any(ch.isalpha() for ch in text):
        raise PhoneError(f"phone number {raw!r} has letters in it; give digits only")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        why = _WHY.get(exc.error_type, "not a phone number")
        raise PhoneError(f"phone number {raw!r} is {why}") from None
    if not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_number(number) or f"+{number.country_code}"
        raise PhoneError(
            f"phone number {raw!r} is not a valid number in {where} "
            "(check the digits, or start it with + and the country code)"
        )
    if phonenumbers.number_type(number) is PhoneNumberType.UNKNOWN:
        raise PhoneError(f"phone number {raw!r} is not a number a person can be reached at")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


@lru_cache(maxsize=4096)  # every webhook parses its sender: 4% of serve's CPU uncached
def canonical(raw: str, region: str) -> str:
    """The E.164 form of a number a provider gave us, or `raw` as it is if it is not a
    plausible phone number (a message that arrived is never refused for its address)."""
    text = raw.strip().removeprefix("whatsapp:")
    if not text or any(ch.isalpha() for ch in text):
        return raw
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        return raw
    if not phonenumbers.is_possible_number(number):
        return raw
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def region_of(raw: str) -> str | None:
    """The region of a number written with + and its country code ("+91..." -> "IN")."""
    text = raw.strip().removeprefix("whatsapp:")
    if not text.startswith("+"):
        return None
    try:
        number = phonenumbers.parse(text, None)
    except NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(number)
    return region if region and region != "ZZ" else None


def address_for(channel: str, raw: str, region: str) -> str:
    """An address an operator typed, checked for its channel: phone channels get E.164 (or
    PhoneError); other channels (Telegram chat ids) are only trimmed."""
    if channel in PHONE_CHANNELS:
        return normalise(raw, region)
    return raw.strip()


def inbound_address(channel: str, raw: str, region: str) -> str:
    """A provider's address for one of our contacts: E.164 on phone channels when it parses."""
    return canonical(raw, region) if channel in PHONE_CHANNELS else raw
