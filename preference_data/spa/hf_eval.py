"""Scoring each stage of an ``hf`` SPA run against pi_init: the paper's claim, checkable on a real model.

SPA's headline is a win rate over the SFT model (AlpacaEval 2.0, MT-Bench). After every stage the
policy pi_i answers the evaluation prompts once and pi_init answers them once (generated the first
time, then kept for the run, with the same seed so sampled answers share their random numbers).
Each pair of answers to one prompt is then compared by what the ``evaluation`` section names,
with the hf suite tier's own machinery:

* a local reward model (``evaluators.hf.reward_scores``): pi_i's mean score and its per-prompt win
  rate over pi_init's answer (ties 1/2);
* an OpenAI-compatible LLM judge (``evaluators.judges.PairwiseJudge``): asked in both orders, a
  prompt scores 1 / 0 when pi_i wins / loses in both and 1/2 otherwise; replies are cached
  (``judge_cache.sqlite``), and with ``length_controlled`` the AlpacaEval-style length-controlled
  win rate (``evaluators.hf_judging.length_controlled_win_rate``, on token lengths) is reported too.

Mean answer lengths (tokens, EOS included) of pi_i and pi_init are recorded either way: verbosity
is the judge's best-known bias and self-rewarding loops' best-known failure. A judge that fails
(endpoint down, no key) leaves its fields NaN with the error in ``record.evaluation``; training goes on.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from evaluators.hf import _pairwise_win_rate, generate, reward_scores
from evaluators.hf_judging import length_controlled_win_rate
from evaluators.judges import JudgeCache, PairwiseJudge
from evaluators.paths import default_cache_dir
from preference_data.spa.hf_config import SPAHFConfig
from preference_data.spa.loop import StageRecord


class StageEvaluator:
    """Answers the evaluation prompts with a policy and compares them with pi_init's answers."""

    def __init__(self, cfg: SPAHFConfig, tokenizer: Any, init: Any, prompts: list[str], device: str,
                 client: Any | None = None) -> None:
        ev = cfg.evaluation
        self.cfg, self.tokenizer, self.init, self.device = cfg, tokenizer, init, device
        self.prompts = prompts[:ev.prompts] if ev.prompts is not None else list(prompts)
        if not self.prompts:
            raise ValueError("evaluation: no evaluation prompts (raise data.eval_prompts or give evaluation.prompt_file)")
        self.reward_model = cfg.eval_reward_model()
        self.judge: PairwiseJudge | None = None
        if ev.enabled and ev.judge is not None:
            cache = JudgeCache(default_cache_dir() / "judge_cache.sqlite") if ev.judge_cache else None
            self.judge = PairwiseJudge(ev.judge, client=client, cache=cache)   # a missing key fails here, early
        self._init_answers: tuple[list[str], list[int], list[float] | None] | None = None

    @property
    def active(self) -> bool:
        return self.reward_model is not None or self.judge is not None

    def _answer(self, model: Any) -> tuple[list[str], list[int]]:
        """(texts, token lengths incl. EOS, as the tinylm backend counts) of ``model``'s answers, at
        the run's evaluation seed."""
        from transformers import set_seed

        g = self.cfg.evaluation.generation
        settings = SimpleNamespace(max_new_tokens=g.max_new_tokens, min_new_tokens=g.min_new_tokens,
                                   do_sample=g.do_sample, temperature=g.temperature, top_p=g.top_p,
                                   generation_batch_size=g.batch_size)
        set_seed(self.cfg.seed * 1000 + 700)
        texts, ids = generate(model, self.tokenizer, self.prompts, settings)
        return texts, [len(row) for row in ids]

    def _rewards(self, answers: list[str]) -> list[float]:
        r = self.cfg.evaluation.reward
        assert self.reward_model is not None
        return reward_scores(self.reward_model, self.prompts, answers, r.batch_size, self.device, r.label)

    def init_answers(self) -> tuple[list[str], list[int], list[float] | None]:
        """pi_init's answers, token lengths and rewards, computed once per run."""
        if self._init_answers is None:
            texts, lengths = self._answer(self.init)
            self._init_answers = (texts, lengths, self._rewards(texts) if self.reward_model else None)
        return self._init_answers

    def reference_length(self) -> float:
        """pi_init's mean answer length, NaN when nothing was evaluated."""
        if self._init_answers is None:
            return math.nan
        lengths = self._init_answers[1]
        return sum(lengths) / len(lengths)

    def evaluate(self, policy: Any, record: StageRecord, out_dir: str | None = None) -> None:
        """Fill ``record``'s evaluation fields for ``policy`` (= pi_i); append its answers to
        ``out_dir/eval_generations.jsonl`` when given."""
        if not self.active:
            return
        init_texts, init_lengths, init_rewards = self.init_answers()
        texts, lengths = self._answer(policy)
        record.response_length = sum(lengths) / len(lengths)
        record.init_response_length = sum(init_lengths) / len(init_lengths)
        details: dict[str, Any] = {"prompts": len(self.prompts)}
        rewards = judge_scores = None
        if self.reward_model is not None and init_rewards is not None:
            rewards = self._rewards(texts)
            record.reward_model_score = sum(rewards) / len(rewards)
            record.reward_model_win_rate = _pairwise_win_rate(rewards, init_rewards)
            details.update(reward_model=self.reward_model, init_reward_model_score=sum(init_rewards) / len(init_rewards))
        if self.judge is not None:
            counters = ("requests", "cache_hits", "prompt_tokens", "completion_tokens")   # per judge object
            before = {k: getattr(self.judge, k) for k in counters}
            try:
                judged = self.judge.compare(self.prompts, texts, init_texts)
            except Exception as exc:  # noqa: BLE001 - an unreachable judge must not cost the trained stages
                details["judge_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            else:
                judge_scores = judged.scores
                record.judge_win_rate = judged.win_rate
                details["judge"] = {"model": self.judge.config.model,
                                    **{k: v for k, v in judged.to_dict().items() if k != "scores"},
                                    **{k: getattr(self.judge, k) - before[k] for k in counters}}   # this stage's
                if self.judge.config.length_controlled:
                    lc = length_controlled_win_rate(judged.scores, lengths, init_lengths)
                    record.judge_lc_win_rate = lc["lc_win_rate"]
                    details["judge"].update(intercept=lc["intercept"], length_coef=lc["length_coef"])
        record.evaluation = details
        if out_dir:
            rows = [{"stage": record.iteration, "prompt": p, "response": t, "init_response": it,
                     "response_tokens": n, "init_response_tokens": m,
                     "reward": None if rewards is None else rewards[k],
                     "init_reward": None if init_rewards is None else init_rewards[k],
                     "judge_score": None if judge_scores is None else judge_scores[k]}
                    for k, (p, t, it, n, m) in enumerate(zip(self.prompts, texts, init_texts, lengths, init_lengths))]
            path = Path(out_dir)
            path.mkdir(parents=True, exist_ok=True)
            with open(path / "eval_generations.jsonl", "w" if record.iteration == 0 else "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
