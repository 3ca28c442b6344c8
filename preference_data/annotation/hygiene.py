"""Request hygiene for the annotation app: security headers, capped and depth-checked JSON
bodies, and tokens redacted from uvicorn's access log."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import Request

MAX_BODY_BYTES = 256 * 1024   # one submission: a few answers and at most a few 10k-character texts
MAX_JSON_DEPTH = 32
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class Denied(Exception):
    """Refuse the request with this status and a message fit to show (HTML page or JSON)."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True when brackets outside strings nest deeper than `limit` (checked before json.loads,
    whose recursion would otherwise fail deep inside the parser)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for ch in body:
        if in_string:
            if escaped:
                escaped = False
            elif ch == 0x5C:  # backslash
                escaped = True
            elif ch == 0x22:  # quote
                in_string = False
        elif ch == 0x22:
            in_string = True
        elif ch in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif ch in (0x5D, 0x7D):
            depth -= 1
    return False


async def read_json(request: Request) -> Any:
    """The request's JSON body, or Denied(413/400) naming the limit that was broken."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise Denied(413, f"body larger than {MAX_BODY_BYTES} bytes")
    if json_depth_exceeds(bytes(body), MAX_JSON_DEPTH):
        raise Denied(400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(bytes(body))
    except (ValueError, RecursionError):
        raise Denied(400, "body must be JSON") from None


class RedactTokens(logging.Filter):
    """Replace the secret part of /a/<token>, /admin/<token>, /join/<token> in access-log lines."""

    PATTERN = re.compile(r"/(a|admin|join)/[^/?\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"/\1/<redacted>", a) if isinstance(a, str) else a
                                for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = self.PATTERN.sub(r"/\1/<redacted>", record.msg)
        return True


def install_log_redaction() -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
