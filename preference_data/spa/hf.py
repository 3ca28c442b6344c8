"""The ``hf`` backend of the SPA loop (``loop.run_loop``): any causal LM, any TRL-format preference dataset.

    pi_0 = DPO(pi_init, seed pairs of the dataset)                         (TRL, contract loss)
    for i in 1..T:
        fresh prompts (dataset rows outside the seed, or a prompt file)
        two samples per prompt from pi_{i-1} (model.generate, temperature / top-p from the config)
        label: implicit reward beta*(log pi_{i-1}(y|x) - log pi_init(y|x)), Bradley-Terry
        pi_i = TRL round on the self-labelled pairs [+ seed], reference pi_{i-1}, with
               noise-aware refinement through the ``smoothing`` column (``hf_refine``)
        (every stage, when configured) pi_i vs pi_init on held-out prompts: reward model and/or
               LLM judge win rates, answer lengths (``hf_eval``)

The judges, the refinement maths and the pair store are the tinylm pipeline's (``judges``,
``refinement``, ``store``). There is no gold reward for arbitrary data, so each iteration reports
the judge's agreement with the dataset's own labels on the fresh prompts' pairs (n/a for a prompt
file) and a Monte-Carlo KL(pi_i || pi_init) on held-out prompts sampled at temperature 1; the
``evaluation`` section adds what the paper reports, win rates over pi_init (``hf_eval``).

Deviations from the paper and from the tinylm loop are listed in ``HF_DEVIATIONS`` below.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from evaluators.hf import generate, load_preference_dataset, prompt_text
from preference_data.spa.hf_config import SPAHFConfig, spa_hf_config_from_dict
from preference_data.spa.hf_eval import StageEvaluator
from preference_data.spa.hf_refine import BatchRefiner, SmoothingDPOTrainer
from preference_data.spa.judges import PairBatch, judge_pairs, make_judge
from preference_data.spa.loop import SPAResult, StageRecord, resolve_loss, run_loop
from preference_data.spa.refinement import dnd_lambda
from preference_data.spa.rounds import steps_for
from preference_data.spa.store import LabelledPair

HF_DEVIATIONS = """\
Judging: the implicit reward scores each response as TRL will train it (prompt + decoded text + EOS,
re-tokenized), not the raw sampled ids; they differ only when generation stopped at max_new_tokens
(TRL appends EOS) or when decode -> encode is not the identity for the tokenizer.
Label agreement: arbitrary HF data has no gold reward, so each iteration reports the judge's
agreement with the dataset's own human labels on the pairs whose prompts were used that iteration
(the sampled responses themselves have no label); n/a when prompts come from a prompt file.
KL: Monte-Carlo over one temperature-1 sample per held-out prompt (unbiased at T = 1 only).
Refinement: as in the tinylm loop, tau follows refinement.threshold (released rule by default) over
self-labelled margins, updated per micro-batch inside TRL's loss; DND, when on, is exact (per-token
logits of policy and reference, one extra no-grad forward of each per micro-batch holding
self-labelled pairs); a pair's stored confidence / smoothing are those of its last visit.
Rounds: as in the authors' released code, the gold seed trains only the initial DPO; each round then
trains on its new self-labelled pairs only, reference = the previous round's policy
(train.include_seed: true replays the seed every round instead). Optimiser and schedule are TRL's
(paper: lr 5e-7, cosine, warm-up).
Evaluation: the paper's AlpacaEval 2.0 / MT-Bench compare against GPT-4 references; here each stage's
policy is compared with pi_init's own answers to held-out (or evaluation.prompt_file) prompts, one
answer per prompt (greedy by default), by a local reward model and/or an OpenAI-compatible judge asked
in both orders. Prompts are scored as the policy saw them (after its chat template, if any).
"""


# ---- tokens and log-probs (mirroring how TRL tokenizes standard-format pairs) --------------------------

def completion_ids(tokenizer: Any, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids incl. EOS) as TRL's DPOTrainer tokenizes ``prompt + completion + eos``."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    full = tokenizer(prompt + completion + tokenizer.eos_token)["input_ids"]
    n = 0
    while n < min(len(prompt_ids), len(full)) and prompt_ids[n] == full[n]:
        n += 1
    return full[:n], full[n:]


@torch.no_grad()
def response_logps(model: Any, prefixes: list[list[int]], responses: list[list[int]], batch_size: int = 16
                   ) -> torch.Tensor:
    """[N] float64 summed log pi(response | prefix), right-padded batches."""
    out: list[torch.Tensor] = []
    device = next(model.parameters()).device
    for s in range(0, len(prefixes), batch_size):
        seqs = [p + r for p, r in zip(prefixes[s:s + batch_size], responses[s:s + batch_size])]
        width = max(len(q) for q in seqs)
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        attention = torch.zeros(len(seqs), width, dtype=torch.long)
        mask = torch.zeros(len(seqs), width - 1)
        for k, (q, p) in enumerate(zip(seqs, prefixes[s:s + batch_size])):
            if not p:
                raise ValueError("empty prompt: the first response token needs a context token")
            ids[k, :len(q)], attention[k, :len(q)] = torch.tensor(q), 1
            mask[k, len(p) - 1:len(q) - 1] = 1
        logits = model(input_ids=ids.to(device), attention_mask=attention.to(device)).logits[:, :-1].float()
        token = torch.log_softmax(logits, -1).gather(2, ids[:, 1:].to(device)[:, :, None]).squeeze(2)
        out.append((token * mask.to(device)).sum(1).double().cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _completion_text(value: Any) -> str:
    return value if isinstance(value, str) else value[-1]["content"]


def _as_completion(tokenizer: Any, prompt: str, ids: list[int]) -> str:
    """Text whose TRL tokenization after ``prompt`` reproduces ``ids`` (a leading space if needed)."""
    body = [t for t in ids if t != tokenizer.eos_token_id]
    text = tokenizer.decode(body, skip_special_tokens=True)
    for candidate in (text, " " + text):
        if completion_ids(tokenizer, prompt, candidate)[1] == body + [tokenizer.eos_token_id]:
            return candidate
    return text if text[:1].isspace() or prompt[-1:].isspace() else " " + text


# ---- the run --------------------------------------------------------------------------------------------

class HFBackend:
    """Models, data and TRL training of one SPA run over an HF causal LM (see ``loop.Backend``)."""

    name = "hf"

    def __init__(self, cfg: SPAHFConfig) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not cfg.model or not cfg.data.dataset:
            raise ValueError("the hf SPA backend needs model and data.dataset")
        self.cfg = cfg
        use_cpu = cfg.train.device == "cpu" or (cfg.train.device == "auto" and not torch.cuda.is_available())
        self.use_cpu, self.device = use_cpu, "cpu" if use_cpu else "cuda"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(cfg.model)
            init = AutoModelForCausalLM.from_pretrained(cfg.model)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot load model {cfg.model!r} (give a local directory or a cached hub id): "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.init = init.to(self.device).eval().requires_grad_(False)
        rows = load_preference_dataset(cfg.data.dataset, cfg.data.split, cfg.data.dataset_config)
        rows = rows.shuffle(seed=cfg.seed)
        n_seed = cfg.data.seed_pairs or max(2, round(cfg.data.seed_fraction * len(rows)))
        if n_seed >= len(rows):
            raise ValueError(f"seed of {n_seed} pairs leaves no prompts in a dataset of {len(rows)}")
        self.seed_rows = [self._row(rows[i]) for i in range(n_seed)]
        pool = [self._row(rows[i]) for i in range(n_seed, len(rows))]
        if cfg.data.prompt_file:
            fresh = [{"prompt": p} for p in _read_prompts(cfg.data.prompt_file, self.tokenizer)]
            self.eval_prompts = [r["prompt"] for r in (pool or fresh)[-cfg.data.eval_prompts:]]
            self.fresh = fresh if pool else fresh[:-cfg.data.eval_prompts]
        else:
            n_eval = min(cfg.data.eval_prompts, max(1, len(pool) // 5))
            self.eval_prompts = [r["prompt"] for r in pool[-n_eval:]]
            self.fresh = pool[:-n_eval]
        need = sum(cfg.data.prompts_per_iteration)
        if need > len(self.fresh):
            raise ValueError(f"prompts_per_iteration needs {need} fresh prompts, only {len(self.fresh)} remain "
                             "after the seed and eval prompts")
        self.offset = 0                       # fresh prompts used so far
        self.refiner: BatchRefiner | None = None
        ev = cfg.evaluation
        self.evaluator = StageEvaluator(cfg, self.tokenizer, self.init,
                                        _read_prompts(ev.prompt_file, self.tokenizer) if ev.prompt_file
                                        else self.eval_prompts, self.device)

    # ---- the loop's interface ------------------------------------------------------------------------
    def judges(self, client: Any | None) -> tuple[Any, list[Any]]:
        cfg = self.cfg
        judge = make_judge(cfg.judge, beta=cfg.judge_beta(), label_temperature=1.0,
                           generator=torch.Generator().manual_seed(cfg.seed), device=self.device, client=client)
        others = [make_judge(dataclasses.replace(cfg.judge, kind=kind), beta=cfg.judge_beta(), label_temperature=1.0,
                             generator=torch.Generator().manual_seed(cfg.seed), device=self.device, client=client)
                  for kind in cfg.compare_judges]
        return judge, others

    def dnd_lambda(self, stage: int) -> float | None:
        r = self.cfg.refinement
        return dnd_lambda(stage, r.dnd_lambda, r.dnd_decay) if r.enabled and r.dnd and stage > 0 else None

    def count(self, rows: list[dict[str, Any]]) -> int:
        return len(rows)

    def with_seed(self, fresh: list[dict[str, Any]], seed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return fresh + seed

    def seed_pairs(self) -> tuple[list[dict[str, Any]], list[LabelledPair]]:
        rows = [{**r, "smoothing": 0.0, "pair_index": -1} for r in self.seed_rows]
        return rows, _seed_records(self)

    def self_label(self, policy: Any, stage: int, judge: Any, others: list[Any], record: StageRecord
                   ) -> tuple[list[dict[str, Any]], list[LabelledPair]]:
        new = _self_label(self, policy, stage, judge, others, self.offset, record)
        self.offset += self.cfg.data.prompts_per_iteration[stage - 1]
        alpha = self.cfg.refinement.alpha if self.cfg.refinement.enabled else 0.0
        rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "smoothing": alpha,
                 "pair_index": k} for k, p in enumerate(new)]
        return rows, new

    def train(self, policy: Any, reference: Any, rows: list[dict[str, Any]], new: list[LabelledPair], stage: int,
              record: StageRecord, loss_fn: Callable[..., Any], loss_kwargs: dict[str, Any]) -> None:
        cfg, r = self.cfg, self.cfg.refinement
        refiner = BatchRefiner(cfg.train.beta, r.noise_fraction, r.warmup_fraction, r.threshold_window,
                               record.dnd_lambda, r.threshold) if stage > 0 and r.enabled else None
        if rows:
            epochs = cfg.train.seed_epochs if stage == 0 else cfg.train.iteration_epochs
            record.steps, record.curve = _train_stage(self, policy, reference, rows, loss_fn, loss_kwargs,
                                                      epochs, stage, refiner)
        for k, rec in enumerate(new):
            if refiner is not None and k in refiner.confidence:
                rec.confidence, rec.smoothing = refiner.confidence[k], refiner.smoothing[k]
                rec.flagged = rec.smoothing > 0
            rec.extra.update(dnd_lambda=record.dnd_lambda, seed=cfg.seed)

    def label_stats(self, record: StageRecord, new: list[LabelledPair], stage: int) -> None:
        record.mean_label_prob = sum(p.label_prob for p in new) / max(1, len(new))
        record.flagged_share = sum(p.flagged for p in new) / max(1, len(new)) if stage else 0.0

    def measure(self, policy: Any, record: StageRecord, stage: int) -> None:
        record.kl = self.kl_to_init(policy, stage)
        self.evaluator.evaluate(policy, record, self.cfg.out_dir)
        if self.cfg.save_policies and self.cfg.out_dir:
            policy.save_pretrained(Path(self.cfg.out_dir) / f"policy_{stage}")
            self.tokenizer.save_pretrained(Path(self.cfg.out_dir) / f"policy_{stage}")

    def result_fields(self) -> dict[str, Any]:
        return {"reference_length": self.evaluator.reference_length()}

    # ---- helpers -------------------------------------------------------------------------------------

    def _row(self, row: dict[str, Any]) -> dict[str, Any]:
        out = {"prompt": prompt_text(row["prompt"], self.tokenizer)}
        if "chosen" in row:
            out.update(chosen=_completion_text(row["chosen"]), rejected=_completion_text(row["rejected"]))
        return out

    def sampling(self, temperature: float) -> SimpleNamespace:
        s = self.cfg.sampling
        return SimpleNamespace(max_new_tokens=s.max_new_tokens, do_sample=True, temperature=temperature,
                               top_p=s.top_p, generation_batch_size=s.batch_size)

    def implicit_logps(self, policy: Any, prompts: list[str], completions: list[str]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log pi(y|x), log pi_init(y|x)) of each completion, on TRL's tokens."""
        pairs = [completion_ids(self.tokenizer, p, c) for p, c in zip(prompts, completions)]
        prefixes, responses = [p for p, _ in pairs], [r for _, r in pairs]
        return response_logps(policy, prefixes, responses), response_logps(self.init, prefixes, responses)

    def token_lengths(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        """[N] completion lengths in tokens (for length-controlled judging)."""
        return torch.tensor([float(len(completion_ids(self.tokenizer, p, c)[1]))
                             for p, c in zip(prompts, completions)], dtype=torch.float64)

    def batch(self, policy: Any, prompts: list[str], a: list[str], b: list[str], judge: Any) -> PairBatch:
        batch = PairBatch(prompts, a, b)
        if judge.name == "implicit":
            batch.policy_a, batch.init_a = self.implicit_logps(policy, prompts, a)
            batch.policy_b, batch.init_b = self.implicit_logps(policy, prompts, b)
            batch.len_a, batch.len_b = self.token_lengths(prompts, a), self.token_lengths(prompts, b)
        return batch

    @torch.no_grad()
    def kl_to_init(self, policy: Any, stage: int) -> float:
        """Monte-Carlo KL(pi || pi_init): mean log-ratio of the policy's own samples at T = 1."""
        from transformers import set_seed

        set_seed(self.cfg.seed * 1000 + 500 + stage)
        _, ids = generate(policy, self.tokenizer, self.eval_prompts, self.sampling(1.0))
        prefixes = [self.tokenizer(p)["input_ids"] for p in self.eval_prompts]
        keep = [k for k, r in enumerate(ids) if r]
        ratio = (response_logps(policy, [prefixes[k] for k in keep], [ids[k] for k in keep])
                 - response_logps(self.init, [prefixes[k] for k in keep], [ids[k] for k in keep]))
        return float(ratio.mean()) if keep else math.nan


def _read_prompts(path: str, tokenizer: Any) -> list[str]:
    text = Path(path).read_text()
    if path.endswith(".jsonl"):
        return [prompt_text(json.loads(line)["prompt"], tokenizer) for line in text.splitlines() if line.strip()]
    return [line for line in text.splitlines() if line.strip()]


def _train_stage(run: HFBackend, policy: Any, reference: Any, rows: list[dict[str, Any]], loss_fn: Callable[..., Any],
                 loss_kwargs: dict[str, Any], epochs: float, stage: int, refiner: BatchRefiner | None
                 ) -> tuple[int, list[float]]:
    """One TRL training stage in place on ``policy``; returns (steps, logged losses)."""
    import datasets
    from trl import DPOConfig

    t = run.cfg.train
    steps = steps_for(epochs, len(rows), t.batch_size * t.gradient_accumulation_steps)
    with tempfile.TemporaryDirectory(prefix="prefdisco-spa-hf-") as scratch:
        args = DPOConfig(
            output_dir=scratch, max_steps=steps, learning_rate=t.learning_rate, beta=t.beta,
            per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.gradient_accumulation_steps,
            warmup_steps=t.warmup, lr_scheduler_type=t.lr_scheduler, max_length=run.cfg.data.max_length,
            seed=run.cfg.seed + stage, data_seed=run.cfg.seed + stage, use_cpu=run.use_cpu, bf16=t.bf16,
            logging_steps=max(1, min(t.logging_steps, steps)), save_strategy="no", report_to=[],
            disable_tqdm=True)
        trainer = SmoothingDPOTrainer(
            model=policy, ref_model=reference, args=args, train_dataset=datasets.Dataset.from_list(rows),
            processing_class=run.tokenizer, loss_fn=loss_fn, loss_kwargs=loss_kwargs, refiner=refiner)
        with contextlib.redirect_stdout(sys.stderr):   # TRL prints its logs; stdout stays the report (--json)
            trainer.train()
        curve = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    policy.eval()
    return steps, curve


def _seed_records(run: HFBackend) -> list[LabelledPair]:
    return [LabelledPair(pair_id=f"i0-{k}", iteration=0, prompt=r["prompt"], chosen=r["chosen"],
                         rejected=r["rejected"], judge="gold-seed", label_prob=1.0)
            for k, r in enumerate(run.seed_rows)]


def _self_label(run: HFBackend, policy: Any, stage: int, judge: Any, others: list[Any], offset: int,
                record: StageRecord) -> list[LabelledPair]:
    """Sample two responses per fresh prompt from ``policy`` (= pi_{i-1}) and label them."""
    from transformers import set_seed

    cfg = run.cfg
    rows = run.fresh[offset:offset + cfg.data.prompts_per_iteration[stage - 1]]
    prompts = [r["prompt"] for r in rows]
    set_seed(cfg.seed * 1000 + stage)
    _, ids_a = generate(policy, run.tokenizer, prompts, run.sampling(cfg.sampling.temperature))
    _, ids_b = generate(policy, run.tokenizer, prompts, run.sampling(cfg.sampling.temperature))
    keep = [k for k in range(len(rows)) if not (cfg.sampling.drop_identical and ids_a[k] == ids_b[k])]
    record.dropped_identical = len(rows) - len(keep)
    prompts = [prompts[k] for k in keep]
    a = [_as_completion(run.tokenizer, p, ids_a[k]) for p, k in zip(prompts, keep)]
    b = [_as_completion(run.tokenizer, p, ids_b[k]) for p, k in zip(prompts, keep)]
    batch = run.batch(policy, prompts, a, b, judge)
    a_wins, label_prob = judge_pairs(judge, batch)
    records = []
    for k in range(len(prompts)):
        win = bool(a_wins[k])
        records.append(LabelledPair(
            pair_id=f"i{stage}-{k}", iteration=stage, prompt=prompts[k], chosen=a[k] if win else b[k],
            rejected=b[k] if win else a[k], judge=judge.name, label_prob=float(label_prob[k])))
    if judge.name == "implicit":
        for rec, k in zip(records, range(len(prompts))):
            win = bool(a_wins[k])
            ra = cfg.judge_beta() * float(batch.policy_a[k] - batch.init_a[k])
            rb = cfg.judge_beta() * float(batch.policy_b[k] - batch.init_b[k])
            rec.extra["implicit_reward"] = [ra, rb] if win else [rb, ra]     # [chosen, rejected]
    for other in others:                       # comparison judges: agreement with the SPA label
        p_other = other.prob_a(run.batch(policy, prompts, a, b, other))
        agree = [(float(p) >= 0.5) == bool(w) for p, w in zip(p_other, a_wins)]
        record.compare_agreement[other.name] = sum(agree) / max(1, len(agree))
        for rec, p, w in zip(records, p_other, a_wins):
            rec.extra[f"{other.name}_prob_chosen"] = float(p) if bool(w) else 1 - float(p)
    labelled = [r for r in rows if "chosen" in r]
    if labelled:                               # the judge on the dataset's own pairs for these prompts
        lab = run.batch(policy, [r["prompt"] for r in labelled], [r["chosen"] for r in labelled],
                        [r["rejected"] for r in labelled], judge)
        agrees, _ = judge_pairs(judge, lab)
        record.label_agreement = float(agrees.double().mean())
        record.agreement_pairs = len(labelled)
    return records


def run_spa_hf(config: SPAHFConfig | dict[str, Any], loss_fn: Callable[..., Any] | None = None, *,
               loss_kwargs: dict[str, Any] | None = None, judge_client: Any | None = None,
               on_stage: Callable[[StageRecord], None] | None = None) -> SPAResult:
    """Seed DPO + ``config.iterations`` SPA rounds over an HF causal LM; ``loss_fn`` defaults to
    ``config.train.loss`` (a contract loss; candidates must run in the sandbox, not here)."""
    from transformers import set_seed

    cfg = config if isinstance(config, SPAHFConfig) else spa_hf_config_from_dict(config)
    start = time.perf_counter()
    loss_fn, loss_kwargs = resolve_loss(cfg, loss_fn, loss_kwargs)
    set_seed(cfg.seed)
    return run_loop(HFBackend(cfg), cfg, loss_fn, loss_kwargs, judge_client=judge_client, on_stage=on_stage,
                    start=start)
