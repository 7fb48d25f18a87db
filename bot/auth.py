"""Console users and log-ins: argon2id password hashes, server-side sessions behind an HttpOnly
SameSite cookie with an expiry, CSRF tokens, log-in throttling that never locks a real user out
(moving windows from `limits`), an optional TOTP second factor (pyotp), the first-start admin.

Imports bot.store, bot.config, bot.errors, argon2-cffi, itsdangerous, limits and pyotp.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from bot.config import ConsoleConfig
from bot.errors import CarebridgeError
from bot.store import AuthSessionRow, Role, Store, UserRow

log = logging.getLogger(__name__)

SESSION_COOKIE = "cb_session"
LOGIN_COOKIE = "cb_login"  # a nonce for the log-in form's CSRF token (no session yet)
DEVICE_COOKIE = "cb_device"  # a browser that logged in as a user before (signed username)
DEVICE_DAYS = 90
WRONG = "wrong username or password, or too many tries: wait a minute and try again"
MIN_PASSWORD_CHARS = 12
SECRET_KEY_ENV = "CAREBRIDGE_SECRET_KEY"
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
_TOUCH_EVERY = timedelta(seconds=60)  # idle-timeout bookkeeping, not a write per request

_hasher = PasswordHasher()  # argon2id with the RFC 9106 low-memory parameters


def _dummy_hash() -> str:
    """Verified against when the username is unknown, so both cases take as long."""
    return _dummy_for(_hasher)


@functools.cache
def _dummy_for(hasher: PasswordHasher) -> str:
    return hasher.hash(secrets.token_urlsafe(16))  # the parameters of the real hashes


class AuthError(CarebridgeError):
    """A log-in or account change that was refused; the message is safe to show."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code  # bad_credentials | disabled | weak_password | bad_username | taken ...


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (salted; parameters encoded in the hash)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True if `password` matches `password_hash`."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class LowPriorityVerifier:
    """Checks passwords in a few threads of their own at a lower CPU priority (Linux: nice is
    per thread, and argon2's lane threads inherit it), so a flood of log-in tries leaves the
    CPU to the webhooks. Callable like `verify_password`."""

    def __init__(self, threads: int, nice: int = 10) -> None:
        self._pool = ThreadPoolExecutor(
            threads, thread_name_prefix="argon2", initializer=self._lower, initargs=(nice,)
        )

    @staticmethod
    def _lower(nice: int) -> None:
        with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: as is
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)

    def __call__(self, password_hash: str, password: str) -> bool:
        return self._pool.submit(verify_password, password_hash, password).result()

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def new_password() -> str:
    """A random one-time password (16 URL-safe characters, about 96 bits)."""
    return secrets.token_urlsafe(12)


def token_hash(token: str) -> str:
    """What the store keeps of a session token: its SHA-256 (the cookie alone can log in)."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_username(username: str) -> str:
    """The username, normalised to lower case; AuthError if it is not a valid one."""
    name = username.strip().lower()
    if not _USERNAME.match(name):
        raise AuthError(
            "a username is 2-32 characters: letters, digits, '.', '_' or '-'",
            code="bad_username",
        )
    return name


def check_new_password(password: str, username: str) -> None:
    """AuthError if `password` is too weak to be set."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise AuthError(
            f"a password needs at least {MIN_PASSWORD_CHARS} characters", code="weak_password"
        )
    if username.lower() in password.lower():
        raise AuthError("the password may not contain the username", code="weak_password")


@dataclass(frozen=True)
class Login:
    """The user behind a request, and their log-in (which carries the CSRF token)."""

    user: UserRow
    session: AuthSessionRow

    @property
    def csrf(self) -> str:
        return self.session.csrf_token

    def has(self, *roles: Role) -> bool:
        return self.user.role in roles


def totp_ok(secret: str, code: str, now: datetime) -> bool:
    """True if `code` is the TOTP of `secret` at `now` (one 30-second step of drift allowed)."""
    code = "".join(code.split())
    return code.isdigit() and pyotp.TOTP(secret).verify(code, for_time=now, valid_window=1)


@dataclass(frozen=True)
class LoginAttempt:
    """Who is trying: the client address, the username typed, and whether the browser logged
    in as that username before (then a flood against the username from elsewhere does not
    stop it)."""

    address: str
    username: str
    known_browser: bool = False


class LoginThrottle:
    """Failed log-ins counted in moving windows (`limits`, in memory: per process) per client
    address, per username from one address, and per username from anywhere. A try over any
    limit is refused before its password is checked, and the wait grows with the windows
    (a minute, an hour, a day). Nothing is locked: a real user elsewhere keeps logging in."""

    def __init__(self, config: ConsoleConfig) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._tiers: tuple[tuple[str, list[RateLimitItem]], ...] = (
            ("address", parse_many(config.login_limits_address)),
            ("account", parse_many(config.login_limits_account)),
            ("anywhere", parse_many(config.login_limits_account_anywhere)),
        )

    def _keys(self, attempt: LoginAttempt) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        name = attempt.username.strip().lower()[:64]
        ids = {
            "address": ("login-address", attempt.address),
            "account": ("login-account", name, attempt.address),
            "anywhere": ("login-anywhere", name),
        }
        return [
            (item, ids[tier])
            for tier, items in self._tiers
            if not (tier == "anywhere" and attempt.known_browser)
            for item in items
        ]

    def allows(self, attempt: LoginAttempt) -> bool:
        """False if this try is over a limit (answer it as a failure without checking)."""
        return all(self._limiter.test(item, *ids) for item, ids in self._keys(attempt))

    def failed(self, attempt: LoginAttempt) -> None:
        """Count a failed try (all tiers, the known browser's `anywhere` too)."""
        for item, ids in self._keys(LoginAttempt(attempt.address, attempt.username)):
            self._limiter.hit(item, *ids)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Auth:
    """Users, log-ins and CSRF tokens on a store."""

    def __init__(
        self,
        store: Store,
        config: ConsoleConfig,
        *,
        clock: Callable[[], datetime] = utcnow,
        env: Mapping[str, str] | None = None,
        verify: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.store = store
        self.verify = verify or (lambda h, p: verify_password(h, p))  # log-in checks
        self.config = config
        self.clock = clock
        env = os.environ if env is None else env
        key = env.get(SECRET_KEY_ENV) or secrets.token_hex(32)
        self._login_tokens = URLSafeTimedSerializer(key, salt="carebridge-login-form")
        self._device_tokens = URLSafeTimedSerializer(key, salt="carebridge-device")
        self._totp_tokens = URLSafeTimedSerializer(key, salt="carebridge-totp-enrol")

    # -- users --------------------------------------------------------------------------------

    def add_user(
        self, username: str, role: str, *, password: str | None = None, by: UserRow | None = None
    ) -> tuple[UserRow, str | None]:
        """Create a user. Without `password`, a one-time password is made and returned."""
        name = check_username(username)
        if role not in {str(r) for r in Role}:
            raise AuthError(
                f"role must be one of {', '.join(r.value for r in Role)}", code="bad_role"
            )
        one_time = None
        if password is None:
            one_time = password = new_password()
        else:
            check_new_password(password, name)
        now = self.clock()
        with self.store.transaction():
            user_id = self.store.add_user(
                name, hash_password(password), role, now, must_change_password=one_time is not None
            )
            if user_id is None:
                raise AuthError(f"the username {name!r} is taken", code="taken")
            self._audit(by, "add_user", now, target=user_id, role=role)
        user = self.store.get_user(user_id)
        assert user is not None
        log.info("user=%s added role=%s", user.id, role)
        return user, one_time

    def reset_password(self, user_id: int, *, by: UserRow | None = None) -> str:
        """Give a user a new one-time password (their log-ins end); returns it."""
        password = new_password()
        now = self.clock()
        with self.store.transaction():
            if self.store.get_user(user_id) is None:
                raise AuthError(f"there is no user {user_id}", code="not_found")
            self.store.set_user_password(
                user_id, hash_password(password), now, must_change_password=True
            )
            self.store.revoke_auth_sessions(now, user_id=user_id)
            self._audit(by, "reset_password", now, target=user_id)
        return password

    def set_disabled(self, user_id: int, disabled: bool, *, by: UserRow | None = None) -> None:
        """Disable a user (their log-ins end at once) or enable them again."""
        now = self.clock()
        with self.store.transaction():
            if self.store.get_user(user_id) is None:
                raise AuthError(f"there is no user {user_id}", code="not_found")
            if by is not None and by.id == user_id and disabled:
                raise AuthError("you cannot disable yourself", code="self")
            self.store.set_user_disabled(user_id, disabled, now)
            if disabled:
                self.store.revoke_auth_sessions(now, user_id=user_id)
            self._audit(by, "disable_user" if disabled else "enable_user", now, target=user_id)

    def change_password(self, login: Login, current: str, new: str) -> None:
        """Set a new password after checking the current one; other log-ins end."""
        user = login.user
        if not verify_password(user.password_hash, current):
            raise AuthError("the current password is wrong", code="bad_credentials")
        check_new_password(new, user.username)
        if new == current:
            raise AuthError("choose a password different from the current one", code="same")
        now = self.clock()
        with self.store.transaction():
            self.store.set_user_password(
                user.id, hash_password(new), now, must_change_password=False
            )
            self.store.revoke_auth_sessions(now, user_id=user.id)
            self._audit(user, "change_password", now)

    # -- log-in -------------------------------------------------------------------------------

    def authenticate(self, username: str, password: str, code: str = "") -> UserRow:
        """The user if the password (and, for a user who enrolled one, the TOTP code) is right;
        AuthError otherwise. An unknown user, a wrong password and a wrong code get the same
        answer after the same work (one argon2 verification). Nothing locks an account: the
        caller throttles (LoginThrottle)."""
        now = self.clock()
        wrong = AuthError(WRONG, code="bad_credentials")
        user = self.store.find_user(username.strip().lower()[:64])
        if user is None:
            self.verify(_dummy_hash(), password)
            self._audit(None, "login_failed", now, reason="unknown_user")
            raise wrong
        if not self.verify(user.password_hash, password):
            self.store.record_login(user.id, now, ok=False)
            self._audit(user, "login_failed", now, reason="password")
            raise wrong
        if user.totp_secret and not totp_ok(user.totp_secret, code, now):
            self.store.record_login(user.id, now, ok=False)
            self._audit(user, "login_failed", now, reason="totp")
            raise wrong
        if user.disabled:
            self._audit(user, "login_failed", now, reason="disabled")
            raise AuthError("this account is disabled", code="disabled")
        if _hasher.check_needs_rehash(user.password_hash):
            self.store.set_user_password(
                user.id,
                hash_password(password),
                now,
                must_change_password=user.must_change_password,
            )
        self.store.record_login(user.id, now, ok=True)
        return user

    # -- second factor (TOTP, RFC 6238) ------------------------------------------------------------

    def totp_offer(self, user: UserRow) -> tuple[str, str, str]:
        """A new secret for `user` to enrol: (secret, otpauth:// URI for an authenticator
        app, signed form token that carries the secret back with the first code)."""
        secret = pyotp.random_base32()
        uri = pyotp.TOTP(secret).provisioning_uri(
            name=user.username, issuer_name=self.config.totp_issuer
        )
        return secret, uri, self._totp_tokens.dumps([user.id, secret])

    def totp_enrol(self, login: Login, token: str, code: str) -> None:
        """Turn on the second factor once the user typed a code from the offered secret."""
        try:
            user_id, secret = self._totp_tokens.loads(token, max_age=900)
        except (BadSignature, ValueError, TypeError):
            raise AuthError("the set-up expired; start again", code="expired") from None
        if user_id != login.user.id or not totp_ok(secret, code, self.clock()):
            raise AuthError("that code is not right; try the current one", code="bad_code")
        now = self.clock()
        with self.store.transaction():
            self.store.set_user_totp(login.user.id, secret, now)
            self._audit(login.user, "totp_enrolled", now)

    def totp_remove(self, user_id: int, *, by: UserRow | None = None) -> None:
        """Turn a user's second factor off (an admin, when a phone is lost)."""
        now = self.clock()
        with self.store.transaction():
            if self.store.get_user(user_id) is None:
                raise AuthError(f"there is no user {user_id}", code="not_found")
            self.store.set_user_totp(user_id, None, now)
            self.store.revoke_auth_sessions(now, user_id=user_id)
            self._audit(by, "totp_removed", now, target=user_id)

    # -- known browsers -------------------------------------------------------------------------

    def device_token(self, user: UserRow) -> str:
        """A signed cookie value marking this browser as one `user` logged in from."""
        return self._device_tokens.dumps(user.username)

    def trusted_device(self, token: str | None, username: str) -> bool:
        """True if `token` says this browser logged in as `username` lately."""
        if not token or len(token) > 256:
            return False
        try:
            name = self._device_tokens.loads(token, max_age=DEVICE_DAYS * 86400)
        except BadSignature:
            return False
        return isinstance(name, str) and hmac.compare_digest(name, username.strip().lower())

    def start_session(self, user: UserRow) -> tuple[str, Login]:
        """Log `user` in: the cookie token (shown once, stored hashed) and the log-in."""
        now = self.clock()
        token = secrets.token_urlsafe(32)
        expires = now + timedelta(hours=self.config.session_hours)
        self.store.create_auth_session(
            user.id, token_hash(token), secrets.token_urlsafe(32), now, expires
        )
        session = self.store.get_auth_session(token_hash(token))
        assert session is not None
        self._audit(user, "login", now)
        return token, Login(user, session)

    def session_for(self, token: str | None, *, touch: bool = True) -> Login | None:
        """The live log-in for a cookie token; None if absent, expired, idle, revoked or the
        user is disabled. `touch=False` (background polling) does not count as activity."""
        if not token or len(token) > 128:
            return None
        session = self.store.get_auth_session(token_hash(token))
        now = self.clock()
        if session is None or session.revoked_at is not None or session.expires_at <= now:
            return None
        if now - session.last_seen_at > timedelta(minutes=self.config.idle_minutes):
            return None
        user = self.store.get_user(session.user_id)
        if user is None or user.disabled:
            return None
        if touch and now - session.last_seen_at > _TOUCH_EVERY:
            self.store.touch_auth_session(session.id, now)
        return Login(user, session)

    def end_session(self, login: Login) -> None:
        """Log out."""
        now = self.clock()
        self.store.revoke_auth_sessions(now, session_id=login.session.id)
        self._audit(login.user, "logout", now)

    # -- CSRF ---------------------------------------------------------------------------------

    @staticmethod
    def check_csrf(login: Login, token: str | None) -> bool:
        """True if `token` is this log-in's CSRF token."""
        return bool(token) and hmac.compare_digest(str(token), login.csrf)

    def login_form_token(self) -> tuple[str, str]:
        """(cookie nonce, signed form token) for the log-in form."""
        nonce = secrets.token_urlsafe(16)
        return nonce, self._login_tokens.dumps(nonce)

    def check_login_form(self, nonce: str | None, token: str | None, max_age_s: int = 3600) -> bool:
        """True if the log-in form token was signed here lately and matches its cookie."""
        if not nonce or not token:
            return False
        try:
            signed = self._login_tokens.loads(token, max_age=max_age_s)
        except BadSignature:
            return False
        return isinstance(signed, str) and hmac.compare_digest(signed, nonce)

    # -- audit ----------------------------------------------------------------------------------

    def _audit(self, user: UserRow | None, action: str, now: datetime, **detail: object) -> None:
        self.store.add_audit(
            now, user.id if user else None, user.username if user else None, action, detail=detail
        )


def ensure_admin(auth: Auth) -> str | None:
    """On first start (no users at all) create `admin` with a one-time password; return it."""
    if auth.store.users():
        return None
    try:
        _, password = auth.add_user("admin", Role.ADMIN)
    except AuthError:  # another process made it first
        return None
    return password
