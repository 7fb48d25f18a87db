"""Channel adapters: one module per provider (twilio, telegram, voice, ussd) plus pure
rendering (render).
May import `bot.messages` and `bot.errors`, nothing else of `bot`; importing this package
does not load the provider libraries.
"""

from channels.base import Channel, CollectingChannel, SignatureError

__all__ = ["Channel", "CollectingChannel", "SignatureError"]
