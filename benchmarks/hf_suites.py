"""Cost of the real-model `imdb` suite per candidate: wall time per run and peak GPU memory.

Builds random-init stand-ins offline (no downloads): a GPT-2 policy of the chosen size with a
word-level tokenizer, a two-class GPT-2 classifier as reward, IMDb-like texts; then evaluates DPO
on the shipped `imdb` suite pointed at them (the same code path as `prefdisco evaluate --suite
imdb --set ...`), with the suite's training shape (micro-batch 2, accumulation to 64 pairs) unless
overridden. Prints the load average next to every number; on a shared CPU only ratios mean much.

    .venv/bin/python benchmarks/hf_suites.py                                  # tiny, CPU: a smoke run
    .venv/bin/python benchmarks/hf_suites.py --size 124m --device cuda --steps 100 --eval-prompts 256

`--size 124m` is GPT-2 small's shape (12 layers, d=768, vocabulary 50257, 124M parameters). The
numbers of random-init weights equal a trained GPT-2's cost per step; rewards and KL are meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = {"tiny": (dict(n_layer=1, n_embd=32, n_head=2, n_positions=64), 0),
         "124m": (dict(n_layer=12, n_embd=768, n_head=12, n_positions=1024), 50257)}  # (shape, vocabulary)


def build_models(root: Path, size: str) -> tuple[Path, Path]:
    """Random-init GPT-2 of `size` and a one-layer two-class GPT-2 classifier, sharing a word-level
    tokenizer padded with filler words to the vocabulary (so the classifier reads every answer)."""
    import torch
    from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel

    from tests import tiny_hf

    shape, vocab = SIZES[size]
    words = list(tiny_hf.REVIEW_WORDS)
    words += [f"w{i}" for i in range(max(0, vocab - len(words) - 3))]
    tokenizer = tiny_hf.build_tokenizer(words)
    torch.manual_seed(0)
    GPT2LMHeadModel(tiny_hf._config(tokenizer, **shape)).save_pretrained(root / "policy")
    GPT2ForSequenceClassification(tiny_hf._config(tokenizer, num_labels=2, **SIZES["tiny"][0])).save_pretrained(
        root / "classifier")
    for name in ("policy", "classifier"):
        tokenizer.save_pretrained(root / name)
        tiny_hf._readable(root / name)
    return root / "policy", root / "classifier"


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--betas", default="0.1,1.0")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=128)
    parser.add_argument("--eval-prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from evaluators import evaluate_loss, load_suite
    from tests import tiny_hf

    with tempfile.TemporaryDirectory(prefix="hf-bench-") as tmp:
        root = Path(tmp)
        policy, classifier = build_models(root, args.size)
        texts = tiny_hf.write_jsonl(root / "texts.jsonl", tiny_hf.review_texts(args.pairs + args.eval_prompts + 8))
        params = sum(p.numel() for p in __import__("transformers").AutoModelForCausalLM.from_pretrained(policy).parameters())
        settings = [f"model.policy={policy}", f"model.device={args.device}", f"reward.model={classifier}",
                    f"data.dataset={texts}", "data.eval_dataset=null", f"data.train_pairs={args.pairs}",
                    "data.heldout_pairs=8", f"data.eval_prompts={args.eval_prompts}", f"train.steps={args.steps}",
                    f"train.batch_size={args.batch_size}", f"train.micro_batch={args.micro_batch}",
                    f"generation.max_new_tokens={args.new_tokens}", f"generation.min_new_tokens={args.new_tokens}",
                    f"betas=[{args.betas}]"]
        suite = load_suite("imdb", settings)
        cache = root / "cache"
        started = time.perf_counter()
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        from evaluators.hf_data import ensure_prepared
        from evaluators.hf_suite_config import HFSuiteConfig

        ensure_prepared(HFSuiteConfig.from_dict(suite.groups[0].config), cache, args.device)
        prepare_s = time.perf_counter() - started
        started = time.perf_counter()
        result = evaluate_loss("dpo", suite, cache_dir=cache, device=args.device)
        wall = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None
    runs = result.runs
    report = {
        "size": args.size, "parameters": params, "device": args.device, "runs": len(runs),
        "steps": args.steps, "pairs_per_step": args.batch_size, "micro_batch": args.micro_batch,
        "eval_prompts": args.eval_prompts, "new_tokens": args.new_tokens,
        "prepare_s": round(prepare_s, 2), "candidate_wall_s": round(wall, 2),
        "wall_per_run_s": [round(r.wall_time_s, 2) for r in runs], "peak_gpu_gib": peak,
        "flags": [r.flags for r in runs], "load": os.getloadavg()[0],
    }
    print(f"{args.size} GPT-2 ({params / 1e6:.1f}M params) on {args.device}: pairs prepared in {prepare_s:.1f} s; "
          f"DPO on {len(runs)} runs ({args.steps} steps x {args.batch_size} pairs, micro-batch {args.micro_batch}) "
          f"in {wall:.1f} s = {wall / len(runs):.1f} s per run"
          + (f"; peak GPU memory {peak:.2f} GiB" if peak is not None else "") + f" ({load()})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
