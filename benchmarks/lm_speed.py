"""Speed of the vectorised LM tier, as ratios measured side by side in one process:

1. today's tinylm fitness suite (``evaluators/suites/fitness.yaml``: sequential ``transformers``
   GPT-2 runs) vs the SAME workload on the vectorised path (same references, model, 100 steps x
   64 pairs, lr, eval prompts; tier ``calibrated_lm`` with ``train.steps: 100``);
   plus the floor under that suite on one CPU thread: its matmul FLOPs (torch's FlopCounterMode)
   over the best fp32 matmul rate of this machine, against the 5x target of issue 15;
2. optimiser steps/s of the vectorised trainer (one run alone, and a suite group of runs trained
   together) vs TRL's ``DPOTrainer`` on the same GPT-2, batch size and sequence length;
3. wall time per candidate of the calibrated suites (fitness, held-out, quickstart, screen).

    .venv/bin/python benchmarks/lm_speed.py                 # everything (~10 min on 2 shared cores)
    .venv/bin/python benchmarks/lm_speed.py --parts trl     # one part: tinylm, floor, trl, suites

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


def matmul_rates(seconds: float = 2.0) -> dict[str, float]:
    """This machine's single-thread fp32 matmul rate (GFLOP/s) at a large square GEMM and at the
    tinylm suite's own shapes (1792 tokens x d=64 x 3d / 4d / d), each the best of a few tries."""
    import torch

    rates = {}
    for m, k, n in [(1024, 1024, 1024), (1792, 64, 192), (1792, 64, 256), (1792, 256, 64)]:
        a, b = torch.randn(m, k), torch.randn(k, n)
        best = 0.0
        for _ in range(5):
            reps, t = 0, time.perf_counter()
            while time.perf_counter() - t < seconds / 20:
                a @ b
                reps += 1
            best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t) / 1e9)
        rates[f"{m}x{k}x{n}"] = best
    return rates


def useful_fraction(suite, cache: str, device: str) -> float:
    """Share of the positions a pair's forward pass computes (chosen and rejected each padded to
    prompt + longest response) that an implementation needs: the prompt once, each response to its
    own length (EOS included). From the suite's cached training pairs."""
    from evaluators.reference import load_or_build_reference
    from evaluators.tasks import make_task
    from evaluators.tinylm_config import TinyLMConfig

    used, computed = 0.0, 0.0
    for g in suite.groups:
        task, cfg = make_task(g.task, **g.task_params), TinyLMConfig.from_dict(g.config)
        for seed in g.seeds:
            tr = load_or_build_reference(task, seed, cfg, Path(cache), device)["train"]
            p, w = tr["prefix"].shape[1], tr["a"].shape[1]
            used += float(p * len(tr["a_len"]) + tr["a_len"].sum() + tr["b_len"].sum())
            computed += 2.0 * (p + w) * len(tr["a_len"])
    return used / computed


def part_floor(cache: str, device: str | None, today_s: float, target: float) -> None:
    """Can today's tinylm fitness suite run ``target`` times faster on one CPU thread at all? Its
    matmul work (torch's FlopCounterMode over one whole candidate: training, sampling, KL, held-out
    pairs; elementwise ops, optimiser and attention softmax not even counted) divided by the best
    fp32 matmul rate this machine reaches is a lower bound on its wall time on any implementation
    that does the same arithmetic."""
    from torch.utils.flop_counter import FlopCounterMode

    from evaluators import evaluate_loss, load_suite

    suite = load_suite("fitness")
    evaluate_loss("dpo", suite, cache_dir=cache, device=device, seeds=1)   # warm-up: references built/loaded
    counter = FlopCounterMode(display=False)
    with counter:
        evaluate_loss("dpo", suite, cache_dir=cache, device=device)
    flops = counter.get_total_flops()
    t = time.perf_counter()
    evaluate_loss("dpo", suite, cache_dir=cache, device=device)
    wall = time.perf_counter() - t
    rates = matmul_rates()
    square, own = rates["1024x1024x1024"], max(v for k, v in rates.items() if k != "1024x1024x1024")
    useful = useful_fraction(suite, cache, device or "cpu")
    need = today_s / target
    print("\n## floor: today's tinylm fitness suite on one CPU thread, whatever the implementation")
    print(f"  matmul work per candidate   {flops / 1e9:8.1f} GFLOP (FlopCounterMode, dpo, {len(suite.instances())} runs)")
    print(f"  of which needed             {useful:8.0%} (no padding, the prompt once per pair): {flops * useful / 1e9:.1f} GFLOP")
    print(f"  fp32 matmul rate, 1 thread  {square:8.1f} GFLOP/s at 1024^3, {own:.1f} at the suite's own shapes ({load()})")
    print(f"  measured now (sequential)   {wall:8.1f} s per candidate ({load()}): matmuls at "
          f"{flops / wall / 1e9:.1f} GFLOP/s")
    for name, rate in (("1024^3", square), ("own-shape", own)):
        print(f"  lower bound at the {name} rate: {flops * useful / rate / 1e9:5.1f} s (needed matmuls only, nothing else)")
    print(f"  {target:.0f}x faster than today's {today_s:.1f} s = {need:.1f} s per candidate: needs the needed matmuls alone at "
          f"{flops * useful / need / 1e9 / square:.0%} of the 1024^3 rate / {flops * useful / need / 1e9 / own:.0%} of the "
          f"own-shape rate, with elementwise ops, optimiser, sampling loop and reward costing nothing")


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
    parser.add_argument("--parts", default="tinylm,floor,trl,suites")
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
    if "floor" in parts:
        part_floor(args.cache_dir, args.device, today_s=40.8, target=5.0)
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
