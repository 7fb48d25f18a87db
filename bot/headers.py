"""Security headers on every response of the web app (pure ASGI middleware) and error pages that
name nothing internal. An HTML page without its own Content-Security-Policy gets one that allows
exactly its inline <script>/<style> blocks by hash (no 'unsafe-inline').
Imports the standard library and starlette.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import MutableMapping
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
NON_HTML_CSP = "default-src 'none'; frame-ancestors 'none'"
_PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'; object-src 'none'"
)
_INLINE = re.compile(rb"<(script|style)(?:\s[^>]*)?>(.*?)</\1>", re.S | re.I)
MAX_BUFFERED = 2_000_000  # an HTML page larger than this gets the strict CSP unbuffered


def page_csp(html: bytes) -> str:
    """A CSP for `html` that allows its own inline scripts and styles by their SHA-256."""
    hashes: dict[bytes, list[str]] = {b"script": [], b"style": []}
    for match in _INLINE.finditer(html):
        tag = match.group(1).lower()
        if tag == b"script" and b"src=" in match.group(0)[: match.group(0).find(b">")]:
            continue  # an external script: 'self' covers it
        digest = base64.b64encode(hashlib.sha256(match.group(2)).digest()).decode()
        hashes[tag].append(f"'sha256-{digest}'")
    script = " ".join(["'self'", *hashes[b"script"]])
    style = " ".join(["'self'", *hashes[b"style"]])
    return f"{_PAGE_CSP}; script-src {script}; style-src {style}"


class SecurityHeaders:
    """Adds BASE_HEADERS to every HTTP response, and a Content-Security-Policy where the app
    did not set one (HTML: computed from the page; anything else: nothing may load)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: MutableMapping[str, Any] | None = None
        body: list[bytes] = []

        async def wrapped(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in BASE_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                html = headers.get("content-type", "").startswith("text/html")
                length = int(headers.get("content-length", "0") or 0)
                if "content-security-policy" in headers:
                    await send(message)
                elif html and length <= MAX_BUFFERED:
                    start = message  # hold it until the page is read: its CSP needs it
                else:
                    headers["Content-Security-Policy"] = _PAGE_CSP if html else NON_HTML_CSP
                    await send(message)
                return
            if start is not None and message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                page = b"".join(body)
                MutableHeaders(scope=start)["Content-Security-Policy"] = page_csp(page)
                await send(start)
                await send({"type": "http.response.body", "body": page, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, wrapped)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><p>{text}</p></body></html>
"""


def error_page(status: int) -> Response:
    """A short page for an HTTP error: the status in words, nothing about the server."""
    titles = {
        404: ("Not found", "There is nothing at this address."),
        405: ("Not allowed", "This address does not accept that kind of request."),
        500: ("Something went wrong", "Please try again in a moment."),
    }
    title, text = titles.get(status, ("Error", "The request could not be served."))
    response = HTMLResponse(_PAGE.format(title=title, text=text), status_code=status)
    for name, value in BASE_HEADERS.items():  # a 500 leaves the app outside the middleware
        response.headers[name] = value
    response.headers["Content-Security-Policy"] = page_csp(b"")
    response.headers["Cache-Control"] = "no-store"
    return response


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's handler for HTTPException (404, 405, ...)."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return error_page(status)


async def server_error(request: Request, exc: Exception) -> Response:
    """Starlette's handler for an unhandled exception (the traceback goes to the log only)."""
    return error_page(500)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPException: http_error,
    404: http_error,
    405: http_error,
    Exception: server_error,
}
