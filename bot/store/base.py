"""The storage seam: `Store`, the protocol every backend implements, composed of one small
protocol per capability (each in its own module with its rows, enums and SQL: bot.store.contacts,
.conversations, .messaging, .tickets, .checkins, .users, .broadcasts, .privacy; `bot.store`
re-exports them). Imports only the standard library and those bot.store modules.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from bot.store.broadcasts import BroadcastStore
from bot.store.checkins import CheckinStore
from bot.store.contacts import ContactStore
from bot.store.conversations import ConversationStore
from bot.store.messaging import MessagingStore
from bot.store.privacy import PrivacyStore
from bot.store.tickets import TicketStore
from bot.store.users import UserStore


class Store(
    ContactStore,
    ConversationStore,
    MessagingStore,
    TicketStore,
    CheckinStore,
    UserStore,
    BroadcastStore,
    PrivacyStore,
    Protocol,
):
    """All persistent state. Times are timezone-aware datetimes; backends store them in UTC.

    Every write is atomic on its own, and joins the caller's `transaction()` if one is open.
    """

    def transaction(self) -> AbstractContextManager[None]:
        """One write transaction: commit at the end of the block, roll back on an exception."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...

    def check_writable(self) -> None:
        """Commit one tiny real write (the readiness probe); StoreError when it cannot be
        committed: a full disk, a read-only file or mount, a lock held too long."""
        ...
