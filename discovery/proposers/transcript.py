"""Record and replay an LLM campaign: every prompt, reply and usage in ``transcript.jsonl``.

`RecordingChat` appends one JSON line per answered request (flushed and fsynced before the reply is
used, so a reply the archive holds is always on disk). `ReplayChat` answers from such a file with no
endpoint at all. Requests are keyed by the slot that asks (its candidate id, e.g. ``g002-s01``), not
by arrival order, so a replay is deterministic however many requests are in flight. A slot asked twice
(the campaign was killed after the reply, before its proposal was stored, and resumed) keeps the
last answer: that is the one the archive holds. A replayed prompt must equal the recorded one; if it
does not, the run has diverged (other config, code or scores) and the replay stops, saying where.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from discovery.errors import UserError
from discovery.proposers.chat import Chat, ChatReply, ChatRequest

TRANSCRIPT_FILE = "transcript.jsonl"
FORMAT = 1


def transcript_path(source: str | Path) -> Path:
    """The transcript of a campaign dir (or the file itself); a one-line error when there is none."""
    path = Path(source).expanduser()
    path = path / TRANSCRIPT_FILE if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"{source} has no {TRANSCRIPT_FILE}: record one with `prefdisco run CONFIG --record` "
                        "(replay needs a campaign directory that was recorded)")
    return path


def read_transcript(path: str | Path) -> dict[str, dict[str, Any]]:
    """The recorded exchanges by key (the last one wins); a torn last line (killed mid-write) is skipped."""
    entries: dict[str, dict[str, Any]] = {}
    lines = Path(path).read_text().split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # the unterminated last line of a killed writer
                continue
            raise UserError(f"{path}:{number} is not a transcript line (JSON expected)") from None
        if entry.get("kind") == "header":
            if entry.get("format") != FORMAT:
                raise UserError(f"{path}: transcript format {entry.get('format')} (this prefdisco reads {FORMAT})")
            continue
        entries[entry["key"]] = entry
    return entries


class RecordingChat:
    """Answers through `inner` and appends every exchange to the campaign's transcript."""

    def __init__(self, inner: Chat, path: str | Path, model_names: list[str]):
        self.inner = inner
        self.path = Path(path)
        self.model_names = model_names
        self._lock = threading.Lock()
        with self._lock:
            self._repair_tail()
            if not self.path.exists() or self.path.stat().st_size == 0:
                self._append({"kind": "header", "format": FORMAT})

    def complete(self, request: ChatRequest) -> ChatReply:
        reply = self.inner.complete(request)
        with self._lock:
            self._append({"kind": "exchange", "key": request.key, "model": self.model_names[request.model_index],
                          "model_index": request.model_index, "messages": request.messages, "reply": reply.text,
                          "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                          "error": reply.error, "json_mode": reply.json_mode, "time": round(time.time(), 3)})
        return reply

    def _repair_tail(self) -> None:
        """Drop a torn last line left by a kill mid-write, so appends start on a line of their own."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as fh:
                fh.truncate(data.rfind(b"\n") + 1)

    def _append(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


class ReplayChat:
    """Answers every request from a recorded transcript; never contacts an endpoint."""

    def __init__(self, source: str | Path):
        self.path = transcript_path(source)
        self.entries = read_transcript(self.path)

    def complete(self, request: ChatRequest) -> ChatReply:
        entry = self.entries.get(request.key)
        if entry is None:
            raise UserError(f"the transcript {self.path} has no reply for {request.key}: the recorded campaign "
                            "stopped earlier, or this one was configured differently")
        if entry["messages"] != request.messages or entry.get("model_index", 0) != request.model_index:
            raise UserError(f"replay diverged at {request.key}: {_first_difference(entry, request)} differs from "
                            f"the recording in {self.path} (replay needs the recorded config, prompts and scores)")
        return ChatReply(text=entry["reply"], prompt_tokens=entry["prompt_tokens"],
                         completion_tokens=entry["completion_tokens"], error=entry.get("error", ""),
                         json_mode=bool(entry.get("json_mode")))


def _first_difference(entry: dict[str, Any], request: ChatRequest) -> str:
    if entry.get("model_index", 0) != request.model_index:
        return "the model drawn"
    recorded, asked = entry["messages"], request.messages
    for i, (a, b) in enumerate(zip(recorded, asked)):
        if a != b:
            return f"message {i} ({b.get('role')})"
    return f"the number of messages ({len(asked)} asked, {len(recorded)} recorded)"
