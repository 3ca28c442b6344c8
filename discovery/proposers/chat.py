"""How a prompt becomes a reply: a live OpenAI-compatible endpoint through the `openai` client.

Transient failures (429, 5xx, timeouts, dropped connections) are retried with exponential backoff
that honours Retry-After; when retries run out the reply carries the error and the slot is recorded
as a failed proposal. Configuration mistakes (401 bad key, 403, 404 unknown model or URL, a 400 the
endpoint keeps giving) stop the campaign with one line naming the fix. JSON mode
(``response_format: json_object``) is asked for when `json_mode` is "on" or "auto"; under "auto" an
endpoint that refuses the parameter (400/422) is asked again without it, and never again with it.
`discovery.proposers.transcript` wraps any `Chat` to record its exchanges or replays them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import openai

from discovery.config import LLMConfig, ModelEndpoint
from discovery.errors import UserError

log = logging.getLogger(__name__)
Message = dict[str, str]


@dataclass
class ChatRequest:
    """One prompt. `key` names the slot that asks (the id its candidate gets), unique in a campaign."""

    key: str
    model_index: int
    messages: list[Message]


@dataclass
class ChatReply:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""  # retries exhausted on a transient error (then `text` is empty)
    json_mode: bool = False  # response_format json_object was sent and accepted


class Chat(Protocol):
    """Anything that answers chat requests (safe to call from several threads at once)."""

    def complete(self, request: ChatRequest) -> ChatReply: ...


def _retry_after_s(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    for key, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(key)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                return None
    return None


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return False


def _refused(exc: Exception) -> bool:
    """A 400/422: the endpoint understood the request and will not serve it as sent."""
    return isinstance(exc, (openai.BadRequestError, openai.UnprocessableEntityError))


class OpenAIChat:
    """The live endpoint(s) of `config.models` (one client each, made on first use)."""

    def __init__(self, config: LLMConfig, *, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.sleep = sleep
        self._clients: dict[int, openai.OpenAI] = {}
        self._json_refused: set[int] = set()  # models whose endpoint refused response_format (auto mode)
        self._lock = threading.Lock()

    def complete(self, request: ChatRequest) -> ChatReply:
        model = self.config.models[request.model_index]
        client = self._client(request.model_index, model)
        json_mode = self.config.json_mode != "off" and request.model_index not in self._json_refused
        cfg = self.config
        delay, attempt = cfg.backoff_initial_s, 0
        while True:
            try:
                extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if json_mode else {}
                response = client.chat.completions.create(model=model.model, messages=request.messages,
                                                          temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                                                          **extra)
                break
            except openai.AuthenticationError:
                raise UserError(f"the endpoint rejected the API key (401); check {model.api_key_env}") from None
            except openai.PermissionDeniedError:
                raise UserError(f"the endpoint refused access to model {model.model!r} (403); "
                                "check the key's permissions") from None
            except openai.NotFoundError:
                raise UserError(f"model {model.model!r} or base_url {model.base_url!r} not found (404); "
                                "check proposer.llm.models") from None
            except Exception as exc:
                if _refused(exc) and json_mode and cfg.json_mode == "auto":
                    with self._lock:
                        self._json_refused.add(request.model_index)
                    log.info("%s refused response_format (%s); asking without JSON mode", model.model, exc)
                    json_mode = False
                    continue
                if _refused(exc):
                    hint = ("set proposer.llm.json_mode: auto or off" if json_mode else
                            "check proposer.llm (max_tokens, conversation_turns for long chats) and the model")
                    raise UserError(f"{model.model!r} refused the request ({getattr(exc, 'status_code', '')}): "
                                    f"{' '.join(str(exc).split())[:300]}; {hint}") from None
                if not _is_transient(exc):
                    raise
                if attempt == cfg.max_retries:
                    return ChatReply(text="", error=f"{type(exc).__name__} after {attempt + 1} attempts: {exc}")
                wait = _retry_after_s(exc)
                self.sleep(min(cfg.backoff_max_s, delay if wait is None else wait))
                delay = min(cfg.backoff_max_s, delay * 2)
                attempt += 1
        text = (response.choices[0].message.content or "") if response.choices else ""
        usage = getattr(response, "usage", None)
        return ChatReply(text=text, prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                         completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0), json_mode=json_mode)

    def _client(self, index: int, model: ModelEndpoint) -> openai.OpenAI:
        with self._lock:
            if index not in self._clients:
                key = os.environ.get(model.api_key_env)
                if not key:
                    if model.base_url is None:
                        raise UserError(f"set the {model.api_key_env} environment variable (API key for "
                                        f"{model.model}) or configure proposer.kind: mutation")
                    key = "not-needed"  # local OpenAI-compatible servers usually ignore the key
                self._clients[index] = openai.OpenAI(base_url=model.base_url, api_key=key, max_retries=0,
                                                     timeout=self.config.request_timeout_s)
            return self._clients[index]
