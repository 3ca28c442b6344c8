"""Length-prefixed frames over pipes, and a JSON decoder that trusts nothing it reads.

JSON, never pickle: a hostile sender must not be able to run code in the reader. Every read has
a deadline and a size limit; ``decode`` turns anything unusual (bad UTF-8, NaN, 400-digit
integers, nesting deeper than ``MAX_DEPTH``, a non-object at the top) into ``WireError`` instead
of an exception the reader did not expect.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import time
from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 32
MAX_INT_DIGITS = 18          # |int| < 10**18: counts, seeds, steps; nothing real is bigger
MAX_MAGNITUDE = 1e15         # floats beyond this are no score, KL or loss value


class WireTimeout(TimeoutError):
    """No complete frame before the deadline."""


class WireClosed(EOFError):
    """The other end closed the pipe (usually: the process died)."""


class WireError(ValueError):
    """A frame that is too big or does not decode into plain, bounded JSON."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, allow_nan=False, separators=(",", ":")).encode()


def send_bytes(fd: int, data: bytes, deadline: float | None = None) -> None:
    """Write one frame; on a non-blocking fd, give up (WireTimeout) at ``deadline``."""
    if len(data) > MAX_FRAME_BYTES:
        raise WireError(f"frame of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
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


def send(fd: int, message: dict[str, Any], deadline: float | None = None) -> None:
    send_bytes(fd, encode(message), deadline)


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


def recv_bytes(fd: int, deadline: float | None = None, limit: int = MAX_FRAME_BYTES) -> bytes:
    """One frame's payload; ``deadline`` is a time.monotonic() value (None waits forever)."""
    (length,) = HEADER.unpack(_read_exact(fd, HEADER.size, deadline))
    if length > limit:
        raise WireError(f"peer announced a {length}-byte frame (limit {limit})")
    return _read_exact(fd, length, deadline)


def recv(fd: int, deadline: float | None = None, limit: int = MAX_FRAME_BYTES) -> dict[str, Any]:
    return decode(recv_bytes(fd, deadline, limit))


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise WireError(f"integer with {len(text)} digits")
    return int(text)


def _bounded_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise WireError(f"number {text[:40]} is not finite or of sane magnitude")
    return value


def _no_constant(text: str) -> Any:
    raise WireError(f"{text} is not a number (non-finite values must be sent as null)")


def _check_depth(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise WireError(f"nesting deeper than {MAX_DEPTH}")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def decode(data: bytes) -> dict[str, Any]:
    """Plain JSON object with finite, bounded numbers and bounded nesting, or WireError."""
    try:
        message = json.loads(data.decode("utf-8"), parse_int=_bounded_int,
                             parse_float=_bounded_float, parse_constant=_no_constant)
    except WireError:
        raise
    except (ValueError, RecursionError, MemoryError, UnicodeDecodeError) as exc:
        raise WireError(f"undecodable message ({type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise WireError("message is not a JSON object")
    _check_depth(message)
    return message


def sanitize(value: Any, depth: int = 0) -> Any:
    """Plain JSON of a job's value, made to pass ``decode``: non-finite or huge floats become
    None, huge ints become None, tuples become lists, anything else its ``str``."""
    if depth > MAX_DEPTH - 2:
        return None
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 10 ** MAX_INT_DIGITS else None
    if isinstance(value, float):
        return value if math.isfinite(value) and abs(value) <= MAX_MAGNITUDE else None
    if isinstance(value, dict):
        return {str(k): sanitize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitize(v, depth + 1) for v in value]
    return str(value)
