"""Exception tree of carebridge. Imports only the standard library.

CarebridgeError
├── ConfigError          a setting is missing or wrong (names the key and the file)
├── FlowError            one or more flow files are invalid (lists every problem)
├── StoreError           the database cannot be opened or migrated
└── ChannelError         a provider call failed
    ├── TransientChannelError   worth retrying (429, 5xx, timeout); may carry retry_after
    └── PermanentChannelError   not worth retrying (bad number, blocked, opted out)
"""

from __future__ import annotations


class CarebridgeError(Exception):
    """Root of every error carebridge raises on purpose."""


class ConfigError(CarebridgeError):
    """A configuration setting is missing or invalid."""


class FlowError(CarebridgeError):
    """Flow files failed validation; `problems` lists each as 'file:node:field: message'."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StoreError(CarebridgeError):
    """The store cannot be opened, migrated or written."""


class ChannelError(CarebridgeError):
    """A provider call failed."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientChannelError(ChannelError):
    """A provider failure worth retrying."""

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class PermanentChannelError(ChannelError):
    """A provider failure not worth retrying; `opt_out` marks the contact unreachable."""

    def __init__(self, message: str, *, code: str | None = None, opt_out: bool = False) -> None:
        super().__init__(message, code=code)
        self.opt_out = opt_out
