"""How carebridge logs: plain lines by default, one JSON object per line on request
(`logging.json: true` or `carebridge --log-format json`; docs/operations.md). Either way a log
line carries ids, never message text or phone numbers (the callers see to that; the quiet list
below keeps libraries that would log URLs with tokens, numbers or text at WARNING).
Imports the standard library and python-json-logger.
"""

from __future__ import annotations

import logging
import sys

# Their INFO/DEBUG lines carry URLs with the bot token, phone numbers or message text.
QUIET = ("httpx", "httpcore", "telegram", "twilio", "uvicorn.access")


def json_formatter() -> logging.Formatter:
    """One JSON object per record: time (ISO 8601, UTC), level, logger, message (plus any
    `extra=` fields and the traceback, if any). Imported here: `carebridge --help` stays quick."""
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def configure(*, verbose: bool, json_lines: bool) -> None:
    """Set up the root logger: `logging.basicConfig` on stderr as before for text (nothing
    changes when the root logger has handlers already, e.g. under pytest); for JSON, one
    stderr handler of our own with the JSON formatter (added once, reused on a second call)."""
    level = logging.INFO if verbose else logging.WARNING
    root = logging.getLogger()
    if json_lines:
        ours = [h for h in root.handlers if getattr(h, "carebridge_json", False)]
        handler = ours[0] if ours else logging.StreamHandler(sys.stderr)
        handler.setFormatter(json_formatter())
        handler.carebridge_json = True  # type: ignore[attr-defined]
        for other in root.handlers:  # a plain stderr handler basicConfig made before
            if other is not handler and type(other) is logging.StreamHandler:
                root.removeHandler(other)
        if not ours:
            root.addHandler(handler)
        root.setLevel(level)
    else:
        logging.basicConfig(level=level)
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
