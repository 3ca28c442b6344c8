"""TEST DOUBLE: an OpenAI-compatible chat-completions HTTP server on 127.0.0.1 with scripted replies.

It implements ``POST /v1/chat/completions`` with the real response schema (id, object, created,
model, choices[].message, finish_reason, usage) and real error bodies, so tests drive it with the
real `openai` client over real HTTP. It is not a model: each request is answered by the next item
of a script the test supplies. Script items:

- ``str``: a 200 completion whose assistant content is that text (usage counts ~4 characters a token;
  a reply longer than the request's ``max_tokens`` is cut there with ``finish_reason: length``);
- ``Status(code, retry_after=None)``: an HTTP error answer (429, 500, 401, 404, ...).
When the script runs out, ``default`` (a callable of the request JSON, or a str) answers.

Like real endpoints it may differ in what it supports: ``json_mode=False`` answers a request that
carries ``response_format`` with a 400 ``invalid_request_error`` naming that parameter (as servers
without JSON mode do). ``latency_s`` holds every answer back that long (requests are served on
concurrent threads, so N clients in flight wait about ``latency_s``, not N times it); ``max_in_flight``
says how many requests it ever held at once.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Union


@dataclass
class Status:
    code: int
    retry_after: float | None = None
    message: str = "scripted error"


ScriptItem = Union[str, Status]


class ScriptedOpenAIServer:
    def __init__(self, script: list[ScriptItem] | None = None,
                 default: Callable[[dict[str, Any]], str] | str | None = None, *,
                 json_mode: bool = True, latency_s: float = 0.0):
        self.script = list(script or [])
        self.default = default
        self.json_mode = json_mode
        self.latency_s = latency_s
        self.requests: list[dict[str, Any]] = []
        self.answers: list[int] = []  # HTTP status of each answer, in order
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "ScriptedOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self, request: dict[str, Any]) -> ScriptItem:
        with self._lock:
            self.requests.append(request)
            if self.script:
                return self.script.pop(0)
        if callable(self.default):
            return self.default(request)
        if isinstance(self.default, str):
            return self.default
        return Status(500, message="script exhausted")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                with server._lock:
                    server.answers.append(code)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error",
                                               "code": "not_found"}})
                    return
                with server._lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.latency_s)
                    self._answer(request)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, request: dict[str, Any]) -> None:
                if "response_format" in request and not server.json_mode:
                    with server._lock:
                        server.requests.append(request)
                    self._send(400, {"error": {"message": "response_format is not supported by this server",
                                               "type": "invalid_request_error", "param": "response_format",
                                               "code": None}})
                    return
                item = server._next(request)
                if isinstance(item, Status):
                    headers = {"Retry-After": str(item.retry_after)} if item.retry_after is not None else {}
                    self._send(item.code, {"error": {"message": item.message, "type": "scripted",
                                                     "code": str(item.code)}}, headers)
                    return
                prompt_chars = sum(len(m.get("content") or "") for m in request.get("messages", []))
                prompt_tokens, completion_tokens = max(1, prompt_chars // 4), max(1, len(item) // 4)
                finish = "stop"
                limit = request.get("max_tokens") or request.get("max_completion_tokens")
                if limit is not None and completion_tokens > int(limit):  # cut off, as a real server does
                    item, completion_tokens, finish = item[: 4 * int(limit)], int(limit), "length"
                self._send(200, {
                    "id": f"chatcmpl-test-{len(server.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": request.get("model", "test-model"),
                    "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                                 "message": {"role": "assistant", "content": item}}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens},
                })

        return Handler


def json_reply(name: str, code: str, thought: str = "scripted test reply") -> str:
    return json.dumps({"thought": thought, "name": name, "code": code})
