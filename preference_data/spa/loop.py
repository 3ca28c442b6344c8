"""The SPA loop (Kim et al., ICLR 2025), written once, over either backend.

    pi_0 = DPO(pi_init, gold seed)
    for i in 1..T:
        fresh prompts X_i; two samples per prompt from pi_{i-1}
        label each pair with the judge (SPA: implicit reward beta*log(pi_{i-1}/pi_init), Bradley-Terry)
        pi_i = train(pi_{i-1} on the self-labelled pairs [+ the seed], reference pi_{i-1},
                     candidate loss + noise-aware refinement with DND lambda_i)

A backend owns the models, the data and one stage's training: ``tinylm`` (``pipeline.TinyLMBackend``:
a tinylm task whose gold reward audits every label and scores every stage) or ``hf``
(``hf.HFBackend``: any causal LM and TRL-format dataset, trained through TRL). The loop owns the
order of things, the pair store and the stage records. Every pair is kept in a ``PairStore``
(exportable as TRL JSONL); ``save_result`` writes it with the per-stage metrics.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from preference_data.spa.store import LabelledPair, PairStore


@dataclass
class StageRecord:
    """What one stage (0 = DPO on the gold seed, i >= 1 = SPA iteration i) produced and how good it is.

    A backend fills what it can measure: the tinylm backend audits labels and policies against the
    task's gold reward; the hf backend has no gold reward, so it reports the judge's agreement with
    the dataset's own labels, the KL and, when its ``evaluation`` section names a reward model or
    an LLM judge, pi_i's win rates against pi_init (the other fields stay NaN)."""

    iteration: int
    pairs: int = 0                   # pairs trained on this stage (self-labelled + replayed seed)
    new_pairs: int = 0               # pairs labelled this stage (seed pairs for stage 0)
    dropped_identical: int = 0
    label_accuracy: float = math.nan  # tinylm: agreement of the new labels with the gold reward (ties excluded)
    label_ties: int = 0
    label_agreement: float = math.nan  # hf: judge vs the dataset's labels on the fresh prompts' pairs
    agreement_pairs: int = 0         # hf: 0 when the prompts had no labelled pairs (prompt file): n/a
    compare_agreement: dict[str, float] = field(default_factory=dict)   # other judges vs the SPA label
    mean_label_prob: float = math.nan
    chosen_longer: float = math.nan  # share of this stage's new pairs whose chosen response has more
                                     # words than the rejected one (pairs of equal length excluded)
    flagged_share: float = 0.0       # share of new pairs smoothed at their last visit
    flagged_label_accuracy: float = math.nan    # label accuracy among flagged pairs (noise detection)
    unflagged_label_accuracy: float = math.nan
    dnd_lambda: float | None = None
    steps: int = 0
    gold_reward: float = math.nan    # policy after this stage
    response_length: float = math.nan   # mean length (tokens, EOS included) of its evaluation samples
                                        # (hf: of pi_i's answers to the evaluation prompts)
    gold_reward_lc: float = math.nan    # tinylm: length-controlled gold reward: gold_reward minus
                                        # slope * (length - pi_init's mean length), the slope of gold
                                        # reward on length fitted on pi_init's samples
    kl: float = math.nan             # sequence KL(pi_i || pi_init), nats
    win_rate: float = math.nan       # vs pi_init samples under the gold reward
    heldout_accuracy: float = math.nan  # implicit-reward accuracy on held-out gold pairs
    init_response_length: float = math.nan  # hf: the same for pi_init's answers (= result.reference_length)
    reward_model_score: float = math.nan    # hf evaluation: mean reward-model score of pi_i's answers
    reward_model_win_rate: float = math.nan  # hf: pi_i vs pi_init per prompt under the reward model (ties 1/2)
    judge_win_rate: float = math.nan        # hf: LLM judge, pi_i vs pi_init, both orders (ties 1/2)
    judge_lc_win_rate: float = math.nan     # hf: length-controlled judge win rate (evaluation.judge.length_controlled)
    evaluation: dict[str, Any] = field(default_factory=dict)   # hf: evaluation details (judge report, n, ...)
    flags: list[str] = field(default_factory=list)
    message: str = ""
    curve: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0


@dataclass
class SPAResult:
    backend: str
    stages: list[StageRecord]
    store: PairStore
    config: dict[str, Any]
    wall_time_s: float = 0.0
    reference_reward: float = math.nan   # tinylm: pi_init's gold reward (hf: unknown)
    reward_range: float = math.nan
    gold_fraction: float = math.nan
    reference_length: float = math.nan   # mean length of pi_init's evaluation samples (hf: when evaluated)

    @property
    def final(self) -> StageRecord:
        return self.stages[-1]

    @property
    def failed(self) -> bool:
        return any(s.flags for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "stages": [asdict(s) for s in self.stages],
                "reference_reward": self.reference_reward, "reward_range": self.reward_range,
                "gold_fraction": self.gold_fraction, "reference_length": self.reference_length,
                "pairs": len(self.store), "wall_time_s": self.wall_time_s,
                "config": self.config}


class Backend(Protocol):
    """What the loop needs from a model family. ``Pairs`` is the backend's own training-set type."""

    name: str
    init: Any                        # pi_init, frozen

    def judges(self, client: Any | None) -> tuple[Any, list[Any]]: ...   # the SPA judge, comparison judges
    def dnd_lambda(self, stage: int) -> float | None: ...
    def seed_pairs(self) -> tuple[Any, list[LabelledPair]]: ...
    def self_label(self, policy: Any, stage: int, judge: Any, others: list[Any], record: StageRecord
                   ) -> tuple[Any, list[LabelledPair]]: ...
    def with_seed(self, fresh: Any, seed: Any) -> Any: ...
    def count(self, pairs: Any) -> int: ...
    def train(self, policy: Any, reference: Any, pairs: Any, new: list[LabelledPair], stage: int,
              record: StageRecord, loss_fn: Callable[..., Any], loss_kwargs: dict[str, Any]) -> None: ...
    def label_stats(self, record: StageRecord, new: list[LabelledPair], stage: int) -> None: ...
    def measure(self, policy: Any, record: StageRecord, stage: int) -> None: ...
    def result_fields(self) -> dict[str, Any]: ...


def resolve_loss(cfg: Any, loss_fn: Callable[..., Any] | None, loss_kwargs: dict[str, Any] | None
                 ) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The candidate (``loss_fn``) or the config's registered ``train.loss``, with its keyword arguments."""
    if loss_fn is None:
        from candidate_losses import get_loss

        spec = get_loss(cfg.train.loss)
        loss_fn, loss_kwargs = spec.fn, {**spec.hyperparameters, **cfg.train.loss_kwargs, **(loss_kwargs or {})}
    return loss_fn, dict(loss_kwargs if loss_kwargs is not None else cfg.train.loss_kwargs)


def run_loop(backend: Backend, cfg: Any, loss_fn: Callable[..., Any], loss_kwargs: dict[str, Any], *,
             judge_client: Any | None = None, on_stage: Callable[[StageRecord], None] | None = None,
             start: float | None = None) -> SPAResult:
    """Seed DPO + ``cfg.iterations`` SPA rounds on ``backend``; stops at the first stage the loss failed."""
    start = time.perf_counter() if start is None else start
    judge, others = backend.judges(judge_client)
    policy = copy.deepcopy(backend.init).requires_grad_(True)
    seed_pairs, seed_records = backend.seed_pairs()
    store, stages = PairStore(), []
    for stage in range(cfg.iterations + 1):
        t0 = time.perf_counter()
        record = StageRecord(iteration=stage, dnd_lambda=backend.dnd_lambda(stage))
        if stage == 0:
            reference, pairs, new = backend.init, seed_pairs, seed_records
        else:
            reference = copy.deepcopy(policy).eval().requires_grad_(False)   # pi_{i-1}
            fresh, new = backend.self_label(reference, stage, judge, others, record)
            pairs = backend.with_seed(fresh, seed_pairs) if cfg.train.include_seed else fresh
        record.pairs, record.new_pairs = backend.count(pairs), len(new)
        backend.train(policy, reference, pairs, new, stage, record, loss_fn, loss_kwargs)
        store.add(new)
        backend.label_stats(record, new, stage)
        record.chosen_longer = chosen_longer_share(new)
        backend.measure(policy, record, stage)
        record.wall_time_s = time.perf_counter() - t0
        stages.append(record)
        if on_stage is not None:
            on_stage(record)
        if set(record.flags) - {"no_gradient"}:
            break                      # a failed candidate loss: stop the loop, report where
    result = SPAResult(backend=backend.name, stages=stages, store=store, config=asdict(cfg),
                       wall_time_s=time.perf_counter() - start, **backend.result_fields())
    if cfg.out_dir:
        save_result(result, cfg.out_dir)
    return result


def chosen_longer_share(pairs: list[LabelledPair]) -> float:
    """Among pairs of unequal length (in whitespace words), the share whose chosen one is longer."""
    votes = [len(p.chosen.split()) > len(p.rejected.split()) for p in pairs
             if len(p.chosen.split()) != len(p.rejected.split())]
    return sum(votes) / len(votes) if votes else math.nan


def save_result(result: SPAResult, out_dir: str | Path) -> None:
    """``pairs.jsonl`` (TRL format, every pair) and ``stages.json`` (per-stage metrics)."""
    import json

    from evaluators.results import finite_or_none

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.store.save_trl_jsonl(out / "pairs.jsonl")
    (out / "stages.json").write_text(json.dumps(finite_or_none(result.to_dict()), indent=2))
