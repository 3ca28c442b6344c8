"""Speed of the vectorised LM tier, as ratios measured side by side in one process:

1. today's tinylm fitness suite (``evaluators/suites/fitness.yaml``: sequential ``transformers``
   GPT-2 runs) vs the SAME workload on the vectorised path (same references, model, 100 steps x
   64 pairs, lr, eval prompts; tier ``calibrated_lm`` with ``train.steps: 100``);
2. optimiser steps/s of the vectorised trainer (one run alone, and a suite group of runs trained
   together) vs TRL's ``DPOTrainer`` on the same GPT-2, batch size and sequence length;
3. wall time per candidate of the calibrated suites (fitness, held-out, quickstart, screen).

    .venv/bin/python benchmarks/lm_speed.py                 # everything (~10 min on 2 shared cores)
    .venv/bin/python benchmarks/lm_speed.py --parts trl     # one part: tinylm, trl, suites

Everything runs single-threaded (``evaluate_loss`` does too; parallelism comes from sandbox
workers), after a warm-up that builds/loads the cached references. Load average is printed next to
every timing: on a shared machine only the ratios are meaningful. GPU: the tier runs under bf16
autocast on CUDA; not measured here unless a CUDA device is present (then ``--device cuda``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def tinylm_as_vectorised(suite):
    """fitness.yaml with each tinylm group moved to the vectorised tier, same workload."""
    groups = []
    for g in suite.groups:
        cfg = {k: dict(v) for k, v in g.config.items()}
        t = cfg.pop("train", {})
        cfg["train"] = {"steps": int(t.get("steps", 150)), "batch_size": int(t.get("batch_size", 64)),
                        "lr": float(t.get("lr", 1e-3)), "warmup": 0.0, "decay": False}
        groups.append(replace(g, tier="calibrated_lm", config=cfg))
    return replace(suite, name=suite.name + "-vectorised", groups=tuple(groups))


def part_tinylm(cache: str, device: str | None, repeats: int) -> None:
    from evaluators import evaluate_loss, load_suite

    sequential = load_suite("fitness")
    vectorised = tinylm_as_vectorised(sequential)
    for suite in (sequential, vectorised):   # warm-up: references built/loaded, imports done
        evaluate_loss("dpo", suite, cache_dir=cache, device=device, seeds=1)
    print("\n## tinylm fitness suite: sequential transformers runs vs the same workload vectorised")
    rows = []
    for r in range(repeats):
        for suite in (sequential, vectorised):
            t = time.perf_counter()
            res = evaluate_loss("dpo", suite, cache_dir=cache, device=device)
            wall = time.perf_counter() - t
            rows.append((suite.name, wall, res.fitness))
            print(f"  {suite.name:<22} dpo fitness {res.fitness:.3f} +- {res.fitness_se:.3f}   "
                  f"{wall:6.1f} s per candidate ({load()})", flush=True)
    seq = sum(w for n, w, _ in rows if n == sequential.name)
    vec = sum(w for n, w, _ in rows if n == vectorised.name)
    print(f"-> speed-up per candidate (same workload): {seq / vec:.1f}x")


def _task_pairs(n: int):
    """Labelled preference pairs of the calibrated sentiment task, as tokens and as text."""
    import torch

    from evaluators.lm import Vocab
    from evaluators.tasks import make_task

    task = make_task("sentiment", length=4)
    vocab = Vocab(task.vocabulary())
    import random

    rng = random.Random(0)
    rows = []
    for _ in range(n):
        prompt = task.sample_prompt(rng)
        a, b = task.sample_sft_response(prompt, rng), task.sample_sft_response(prompt, rng)
        if task.gold_reward(prompt, b) > task.gold_reward(prompt, a):
            a, b = b, a
        rows.append((prompt, a, b))
    width = task.max_response_len + 1
    prefix = torch.tensor([vocab.prefix(p) for p, _, _ in rows])
    enc_a = [vocab.encode_response(a, width) for _, a, _ in rows]
    enc_b = [vocab.encode_response(b, width) for _, _, b in rows]
    tokens = {"prefix": prefix, "chosen": torch.tensor([e[0] for e in enc_a]),
              "chosen_len": torch.tensor([e[1] for e in enc_a]),
              "rejected": torch.tensor([e[0] for e in enc_b]), "rejected_len": torch.tensor([e[1] for e in enc_b])}
    text = [{"prompt": " ".join(p), "chosen": " " + " ".join(a), "rejected": " " + " ".join(b)} for p, a, b in rows]
    return task, vocab, tokens, text


def part_trl(model_cfg: dict, batch: int, steps: int, group: int) -> None:
    import datasets
    import torch
    import transformers

    from candidate_losses import get_loss

    datasets.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    from evaluators.batched_gpt import BatchedGPT, GPTShape, response_logps
    from evaluators.batched_training import PairData, train_batched
    from evaluators.lm import ModelConfig, build_model

    task, vocab, tokens, text = _task_pairs(batch * steps)
    n_positions = 1 + task.prompt_len + 1 + task.max_response_len + 1
    mc = ModelConfig(**model_cfg)
    shape = GPTShape(len(vocab), n_positions, mc.n_layer, mc.n_embd, mc.n_head)
    print(f"\n## optimiser steps/s: GPT-2 {model_cfg} ({shape.n_params()} params), {batch} pairs per step, "
          f"sequences {n_positions - 1} tokens")

    def ours(m: int) -> float:
        hf = build_model(len(vocab), n_positions, mc, 0)
        model = BatchedGPT.from_hf([hf.state_dict()] * m, shape)
        data = {k: v.unsqueeze(0).expand(m, *v.shape).contiguous() for k, v in tokens.items()}
        with torch.no_grad():
            rc = response_logps(model, data["prefix"], data["chosen"], data["chosen_len"])
            rr = response_logps(model, data["prefix"], data["rejected"], data["rejected_len"])
        pairs = PairData(ref_chosen=rc, ref_rejected=rr, **data)
        kw = dict(batch_size=batch, lr=1e-4, weight_decay=0.0, grad_clip=1.0, log_every=10)
        train_batched(model, pairs, get_loss("dpo").fn, [0.1] * m, {}, epochs=1, max_steps=3,
                      order_generators=[torch.Generator().manual_seed(i) for i in range(m)], **kw)  # warm-up
        t = time.perf_counter()
        train_batched(model, pairs, get_loss("dpo").fn, [0.1] * m, {}, epochs=1, max_steps=steps,
                      order_generators=[torch.Generator().manual_seed(i) for i in range(m)], **kw)
        return steps * m / (time.perf_counter() - t)

    def trl(precompute: bool) -> float:
        from datasets import Dataset
        from transformers import GPT2Config, GPT2LMHeadModel
        from trl import DPOConfig, DPOTrainer

        from tests.tiny_hf import build_tokenizer

        tok = build_tokenizer(vocab.tokens[4:])
        cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=mc.n_embd, n_layer=mc.n_layer,
                         n_head=mc.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                         bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        with tempfile.TemporaryDirectory() as tmp:
            torch.manual_seed(0)
            GPT2LMHeadModel(cfg).save_pretrained(tmp)
            tok.save_pretrained(tmp)
            args = DPOConfig(output_dir=f"{tmp}/out", use_cpu=True, bf16=False, report_to=[], max_steps=steps,
                             per_device_train_batch_size=batch, learning_rate=1e-4, beta=0.1, logging_steps=10_000,
                             save_strategy="no", disable_tqdm=True, seed=0, max_length=32,
                             precompute_ref_log_probs=precompute, dataloader_num_workers=0)
            trainer = DPOTrainer(model=tmp, args=args, train_dataset=Dataset.from_list(text), processing_class=tok)
            # TRL's own train_runtime: its training loop only (dataset preparation and, with
            # precompute_ref_log_probs, the reference pass happen before it) -- the view most
            # favourable to TRL.
            return steps / float(trainer.train().metrics["train_runtime"])

    rates = {"TRL DPOTrainer (reference model forward every step)": trl(False),
             "TRL DPOTrainer (precompute_ref_log_probs=True)": trl(True),
             "vectorised trainer, 1 run": ours(1),
             f"vectorised trainer, {group} runs of a group together": ours(group)}
    base = rates["TRL DPOTrainer (reference model forward every step)"]
    best_trl = max(base, rates["TRL DPOTrainer (precompute_ref_log_probs=True)"])
    for name, rate in rates.items():
        print(f"  {name:<58} {rate:8.1f} run-steps/s  ({rate / base:4.1f}x TRL default, "
              f"{rate / best_trl:4.1f}x faster TRL) ({load()})", flush=True)


def part_suites(cache: str, device: str | None, suites: list[str]) -> None:
    from evaluators import evaluate_loss, load_suite

    print("\n## calibrated suites: wall time per candidate (dpo; references cached)")
    for name in suites:
        suite = load_suite(name)
        evaluate_loss("dpo", suite, cache_dir=cache, device=device, seeds=1)   # warm-up
        t = time.perf_counter()
        res = evaluate_loss("dpo", suite, cache_dir=cache, device=device)
        wall = time.perf_counter() - t
        n = len(res.runs)
        print(f"  {name:<26} {n:3d} runs  fitness {res.fitness:.3f} +- {res.fitness_se:.3f}  "
              f"{wall:6.1f} s per candidate ({load()})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="tinylm,trl,suites")
    parser.add_argument("--cache-dir", default=os.environ.get("PREFDISCO_CACHE", "/tmp/prefdisco-bench-cache"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps timed per trainer (part trl)")
    parser.add_argument("--suites", default="calibrated_fitness,calibrated_heldout,calibrated_quickstart,"
                                            "calibrated_screen,calibrated_transfer")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    print(f"# lm_speed: cpus={os.cpu_count()} threads=1 device={args.device or 'cpu'} torch {torch.__version__} "
          f"{time.strftime('%Y-%m-%d %H:%M')} ({load()})")
    parts = args.parts.split(",")
    if "tinylm" in parts:
        part_tinylm(args.cache_dir, args.device, args.repeats)
    if "trl" in parts:
        from evaluators import load_suite

        group = load_suite("calibrated_fitness").groups[0]
        model = dict(group.config["model"])
        runs = len(group.seeds) * len(group.noises) * len(group.betas)
        part_trl(model, int(group.config["train"].get("batch_size", 32)), args.steps, runs)
    if "suites" in parts:
        part_suites(args.cache_dir, args.device, [s for s in args.suites.split(",") if s])
    print(f"# done ({load()})")


if __name__ == "__main__":
    main()
