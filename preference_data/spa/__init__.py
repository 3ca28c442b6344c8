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
deviations from the paper are listed in ``DEVIATIONS`` below and printed by ``prefdisco spa --help``.
"""

from __future__ import annotations

from preference_data.spa.config import SPAConfig, dump_spa_config, load_spa_config, spa_config_from_dict
from preference_data.spa.store import LabelledPair, PairStore

DEVIATIONS = """\
Scale: tinylm tasks (word-level GPT-2, ~0.4M params, 9-token responses) instead of a 7B model on
UltraFeedback; seed 200 gold pairs + 800/2000/3000 prompts (same 2:8:20:30 proportions, 3.3 % gold,
1/10 of the paper's counts). Seed pairs are sampled from pi_init and labelled by Bradley-Terry on
the gold reward (UltraFeedback pairs come from other models, labelled by GPT-4).
Optimiser: the tinylm tier's constant-LR AdamW (lr 1e-3, grad-clip 1), not 5e-7 with cosine
schedule and warm-up. Epochs as in the paper (3 on the seed, 1 per iteration).
Seed replay: by default the gold seed is replayed in every iteration (train.include_seed); the
paper's iterations train on the newly generated data (set include_seed: false for that).
Identical response pairs (frequent with a 60-word vocabulary) are dropped before judging.
Refinement: tau is the K-quantile (K=10 %) over a running window of the last 512 self-labelled
margins; no smoothing in the first 20 % of each round's steps; DND lambda 1/2, 1/4, 1/8.
Any contract loss L is smoothed as (1-eps) L(pc,pr,rc,rr) + eps L(pr,pc,rr,rc), which is the
paper's refined loss exactly when L is DPO.
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
