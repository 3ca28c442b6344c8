"""LLMProposer: candidate losses from any OpenAI-compatible chat endpoint via the `openai` client.

Transient failures (429, 5xx, timeouts, dropped connections) are retried with exponential backoff
that honours Retry-After; configuration mistakes (401 bad key, 404 unknown model or URL) stop the
campaign with one line naming the fix. Tokens and cost are accounted per proposal. Several models
form a weighted ensemble: each prompt goes to one model drawn by weight with the slot's seed.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, Callable

import openai

from discovery.proposers.reply import extract_reply
from discovery.config import LLMConfig, ModelEndpoint, ProposerConfig
from discovery.errors import UserError
from discovery.proposers.prompting import ProposalContext, RepairContext, render_propose, render_repair, render_system
from discovery.proposers.base import Proposal


class LLMRequestFailed(RuntimeError):
    """Retries exhausted on a transient error; the slot is recorded as a failed proposal."""


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


class LLMProposer:
    name = "llm"

    def __init__(self, config: LLMConfig, *, sleep: Callable[[float], None] = time.sleep):
        if not config.models:
            raise UserError("proposer.llm.models is empty; add at least one model")
        self.config = config
        self.sleep = sleep
        self._clients: dict[int, openai.OpenAI] = {}

    # ---- public interface ---------------------------------------------------------------------
    def propose(self, context: ProposalContext) -> list[Proposal]:
        messages = [{"role": "system", "content": render_system()},
                    {"role": "user", "content": render_propose(context)}]
        parent_ids = [p.id for p in context.parents]
        return self._ask(messages, context.seed, parent_ids, max(1, context.samples), self.name)

    def repair(self, context: RepairContext) -> list[Proposal]:
        messages = [{"role": "system", "content": render_system()},
                    {"role": "user", "content": render_repair(context)}]
        return self._ask(messages, context.seed, [context.failed.id], 1, f"{self.name}-repair")

    # ---- internals ----------------------------------------------------------------------------
    def _pick_model(self, seed: int) -> tuple[int, ModelEndpoint]:
        models = self.config.models
        if len(models) == 1:
            return 0, models[0]
        index = random.Random(seed).choices(range(len(models)), weights=[m.weight for m in models])[0]
        return index, models[index]

    def _client(self, index: int, model: ModelEndpoint) -> openai.OpenAI:
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

    def _ask(self, messages: list[dict[str, str]], seed: int, parent_ids: list[str], samples: int,
             proposer: str) -> list[Proposal]:
        index, model = self._pick_model(seed)
        client = self._client(index, model)
        proposals = []
        for _ in range(samples):
            try:
                response = self._complete(client, model, messages)
            except LLMRequestFailed as exc:
                proposals.append(Proposal(thought="", name="llm_error", code=None, parent_ids=parent_ids,
                                          proposer=f"{proposer}:{model.model}", error=str(exc)))
                continue
            text = (response.choices[0].message.content or "") if response.choices else ""
            usage = getattr(response, "usage", None)
            p_tok = int(getattr(usage, "prompt_tokens", 0) or 0)
            c_tok = int(getattr(usage, "completion_tokens", 0) or 0)
            cost = (p_tok * model.input_cost_per_mtok + c_tok * model.output_cost_per_mtok) / 1e6
            reply = extract_reply(text)
            proposals.append(Proposal(
                thought=reply.thought, name=reply.name, code=reply.code, parent_ids=parent_ids,
                proposer=f"{proposer}:{model.model}", prompt_tokens=p_tok, completion_tokens=c_tok,
                cost_usd=cost, error=reply.problem, meta={"raw_reply": text[:4000]},
            ))
        return proposals

    def _complete(self, client: openai.OpenAI, model: ModelEndpoint, messages: list[dict[str, str]]) -> Any:
        cfg = self.config
        delay = cfg.backoff_initial_s
        for attempt in range(cfg.max_retries + 1):
            try:
                return client.chat.completions.create(
                    model=model.model, messages=messages, temperature=cfg.temperature,
                    max_tokens=cfg.max_tokens,
                )
            except openai.AuthenticationError:
                raise UserError(f"the endpoint rejected the API key (401); check {model.api_key_env}") from None
            except openai.PermissionDeniedError:
                raise UserError(f"the endpoint refused access to model {model.model!r} (403); "
                                "check the key's permissions") from None
            except openai.NotFoundError:
                raise UserError(f"model {model.model!r} or base_url {model.base_url!r} not found (404); "
                                "check proposer.llm.models") from None
            except Exception as exc:  # noqa: BLE001 - classified just below
                if not _is_transient(exc):
                    raise
                if attempt == cfg.max_retries:
                    raise LLMRequestFailed(f"{type(exc).__name__} after {attempt + 1} attempts: {exc}") from None
                wait = _retry_after_s(exc)
                wait = min(cfg.backoff_max_s, delay if wait is None else wait)
                self.sleep(wait)
                delay = min(cfg.backoff_max_s, delay * 2)
        raise AssertionError("unreachable")


def from_config(config: ProposerConfig) -> LLMProposer:
    """``proposer.kind: llm`` in a campaign config."""
    return LLMProposer(config.llm)
