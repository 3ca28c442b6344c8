"""SPA: Spread Preference Annotation (Kim, Lee, Shin, Kim; ICLR 2025; arXiv 2406.04412).

A small gold-labelled seed, then rounds of self-generated, self-labelled preference data:

    from preference_data.spa import load_spa_config, run_spa
    result = run_spa(load_spa_config("configs/spa.yaml"))          # or run_spa(cfg, loss_fn=candidate)
    result.stages[-1].gold_reward; result.store.save_trl_jsonl("pairs.jsonl")

Modules: ``loop`` (the loop, once: seed DPO, then sample, self-label, refine, train; stage records,
result, saving), ``config`` (typed YAML config), ``judges`` (implicit reward / gold / reward model /
LLM), ``refinement`` (noise-aware label smoothing with de-coupled noise detection), ``store`` (pairs +
TRL export), ``tier`` (the ``spa`` benchmark-suite tier). Two backends plug into the loop:
``pipeline`` (tinylm: a task whose gold reward audits everything; ``rounds`` trains on the tinylm
trainer) and ``hf`` (any Hugging Face causal LM through TRL: ``hf_config``, ``hf_refine``,
``configs/spa_hf.yaml`` with ``backend: hf``; its deviations are ``hf.HF_DEVIATIONS``). Small-scale
deviations from the paper are listed in ``DEVIATIONS`` below and printed by ``prefdisco spa CONFIG --deviations``.
"""

from __future__ import annotations

from preference_data.spa.config import SPAConfig, dump_spa_config, load_spa_config, spa_config_from_dict
from preference_data.spa.store import LabelledPair, PairStore

DEVIATIONS = """\
Defaults follow the authors' released code (kingdy2002/SPA): each round trains on its new
self-labelled pairs only, from the previous round's policy, which is also its DPO reference; tau is
the mean of the 6th and 7th smallest of the last 50 margins of earlier batches (0 until 50 are
seen), a pair is confident iff its margin > tau; alpha 0.1, 0 in the first 20 % of a round's steps;
de-coupled noise detection off (their configs run with mix = 1); 10 % warm-up then cosine decay.
What still differs, and why:
- Scale: tinylm tasks (word-level GPT-2 of 5k-0.4M params, responses of up to 9 words) instead of
  a 7B model on UltraFeedback; configs/spa.yaml: 200 gold pairs + 800/2000/3000 prompts (the
  paper's 2:8:20:30 proportions, 3.3 % gold, 1/10 of its counts); the spa suite and the scale
  study: 100 + 400/1000/1500. Seed pairs are sampled from pi_init and labelled by Bradley-Terry
  on the gold reward (UltraFeedback's come from other models, labelled by GPT-4).
- Learning rate: peak 1e-3 (the tinylm tier's scale) instead of 5e-7 for 7B; the schedule runs
  within each stage.
- Rounds: 3 as in the paper (the released script runs 2).
- Their trainer runs one pair per micro-batch, so its "last 50 step margins" are the last 50
  pairs' margins; ours keep the last 50 self-labelled pairs' margins across batches of 32.
- Identical response pairs (frequent with a 60-word vocabulary) are dropped before judging.
- Any contract loss L is smoothed as (1-eps) L(pc,pr,rc,rr) + eps L(pr,pc,rr,rc), which is the
  paper's refined loss exactly when L is DPO.
Options that keep our first version: train.include_seed: true (replay the gold seed every round),
refinement.threshold: quantile with threshold_window: 512 (K-quantile including the current
batch), refinement.dnd: true (lambda 1/2, 1/4, 1/8 -- a schedule not found in the paper or the
code), train.lr_schedule: constant. Ours only: judge.length_control (per_token / regress).
"""

__all__ = ["DEVIATIONS", "LabelledPair", "PairStore", "SPAConfig", "dump_spa_config",
           "load_spa_config", "run_spa", "run_spa_hf", "spa_config_from_dict"]


def __getattr__(name: str):  # torch-heavy pipeline imported on first use
    if name == "run_spa":
        from preference_data.spa.pipeline import run_spa

        return run_spa
    if name == "run_spa_hf":
        from preference_data.spa.hf import run_spa_hf

        return run_spa_hf
    raise AttributeError(name)
