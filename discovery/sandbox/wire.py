"""Length-prefixed JSON messages over raw pipe file descriptors.

JSON, not pickle: the parent must never deserialise something a hostile worker could shape into
code. Reads take a deadline so a silent or stuck worker cannot hang the parent.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

HEADER = struct.Struct(">I")
MAX_MESSAGE_BYTES = 32 * 1024 * 1024


class WireTimeout(TimeoutError):
    """No complete message before the deadline."""


class WireClosed(EOFError):
    """The other end closed the pipe (usually: the worker died)."""


def send(fd: int, message: dict[str, Any], deadline: float | None = None) -> None:
    """Write one message; on a non-blocking fd, give up (WireTimeout) at ``deadline``."""
    data = json.dumps(message, allow_nan=True).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WireTimeout() from None
            select.select([], [fd], [], remaining)
            continue
        view = view[written:]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WireTimeout()
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                raise WireTimeout()
        chunk = os.read(fd, min(n - len(chunks), 1 << 20))
        if not chunk:
            raise WireClosed()
        chunks.extend(chunk)
    return bytes(chunks)


def recv(fd: int, deadline: float | None = None) -> dict[str, Any]:
    """One message; ``deadline`` is a time.monotonic() value (None waits forever)."""
    (length,) = HEADER.unpack(_read_exact(fd, HEADER.size, deadline))
    if length > MAX_MESSAGE_BYTES:
        raise ValueError(f"peer announced a {length}-byte message; refusing")
    message = json.loads(_read_exact(fd, length, deadline))
    if not isinstance(message, dict):
        raise ValueError("peer sent a non-object message")
    return message
