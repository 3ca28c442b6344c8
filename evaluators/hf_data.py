"""Prepared data of an ``hf`` suite group: built once by the trusted parent, read by every run.

Everything a run needs that does not depend on the candidate loss is made here and cached under
``<cache>/hf/<key>/`` (key: a hash of the group's model, data, generation and reward settings):

* ``train.jsonl`` / ``heldout.jsonl``: preference pairs (TRL format). ``data.source: pairs`` takes
  them from a dataset; ``generate`` (the DPO paper's IMDb protocol) cuts prompts of 2-8 tokens
  from texts, lets the reference answer each twice or more, and the reward model picks the
  (best, worst) answers as (chosen, rejected).
* ``eval.jsonl``: the evaluation prompts, each with the answer the policy is compared against (a
  dataset column such as TL;DR's human summary, or the reference model's own sample) and, with a
  reward model, that answer's reward.
* ``meta.json``: local paths of the policy and reward model (hub ids are resolved here, where the
  network is, so sandboxed runs load them offline) and summary numbers.

The sandbox sees the cache read-only, so runs there only read what the parent built.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from evaluators.hf_suite_config import HFSuiteConfig

FORMAT = 1  # bump when the prepared files change meaning
# The parent prepares from several pool threads at once (one per sandbox slot): one build at a time,
# which also keeps transformers' lazy imports (not thread-safe) out of a race.
_BUILD_LOCK = threading.Lock()


def prepared_dir(config: HFSuiteConfig, cache_dir: Path | str) -> Path:
    blob = json.dumps({"format": FORMAT, **config.prepared_part()}, sort_keys=True, default=list)
    return Path(cache_dir) / "hf" / hashlib.sha256(blob.encode()).hexdigest()[:20]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


class HFSourceError(ValueError):
    """A model or dataset of an hf suite cannot be loaded; the message names the key to change."""


def is_local(name: str) -> bool:
    return Path(name).expanduser().exists()


def resolve_model(name: str) -> str:
    """A local directory holding ``name``: the path itself, or the hub snapshot (downloaded here)."""
    if is_local(name):
        return str(Path(name).expanduser().resolve())
    from huggingface_hub import snapshot_download

    # PyTorch weights and tokenizer files only: skip the TensorFlow/Flax/ONNX copies many repos carry.
    try:
        return snapshot_download(name, ignore_patterns=["*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite",
                                                        "tf_model*", "flax_model*", "rust_model*", "onnx/*"])
    except Exception as exc:  # offline, unknown repo, gated repo...
        raise HFSourceError(f"model {name!r} is neither a local path nor loadable from the hub "
                            f"({type(exc).__name__}); download it, or point the suite at a local copy "
                            "(e.g. --set model.policy=/path/to/model)") from None


def load_rows(source: str, config_name: str | None, split: str):
    """A `datasets.Dataset` from a local file or save_to_disk directory, or a hub id."""
    import datasets

    path = Path(source).expanduser()
    kinds = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
    if path.is_file():
        if path.suffix not in kinds:
            raise ValueError(f"unsupported dataset file {path.name}; use .jsonl, .json, .parquet or .csv")
        data = datasets.load_dataset(kinds[path.suffix], data_files=str(path), split="train")
    elif path.is_dir() and any((path / n).exists() for n in ("dataset_info.json", "dataset_dict.json")):
        data = datasets.load_from_disk(str(path))
    else:
        try:
            data = datasets.load_dataset(source, config_name, split=split)
        except Exception as exc:  # offline, unknown dataset, script-based dataset...
            raise HFSourceError(f"dataset {source!r} is neither a local file/directory nor loadable from the hub "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}); "
                                "point the suite at a local copy (e.g. --set data.dataset=/path/data.jsonl)") from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise ValueError(f"{source} has no split {split!r} (splits: {', '.join(data)})")
        data = data[split]
    return data


def _column(data: Any, name: str, source: str) -> list[Any]:
    if name not in data.column_names:
        raise ValueError(f"{source} has no column {name!r} (columns: {', '.join(data.column_names)}); "
                         "set the data section's column names")
    return list(data[name])


def _gen_config(config: HFSuiteConfig):
    from evaluators.hf import HFTierConfig

    g = config.generation
    return HFTierConfig(max_new_tokens=g.max_new_tokens, min_new_tokens=g.min_new_tokens, do_sample=g.do_sample,
                        temperature=g.temperature, top_p=g.top_p, generation_batch_size=g.batch_size)


def _as_chat(prompt: Any, tokenizer: Any) -> Any:
    """A string prompt becomes a user message for a model with a chat template."""
    if isinstance(prompt, str) and getattr(tokenizer, "chat_template", None):
        return [{"role": "user", "content": prompt}]
    return prompt


def _device(requested: str | None, config: HFSuiteConfig) -> str:
    import torch

    wanted = config.model.device if config.model.device != "auto" else (requested or "auto")
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if wanted == "cuda" else "cpu"


def _cut_prompts(texts: list[str], tokenizer: Any, config: HFSuiteConfig, rng: random.Random) -> list[str]:
    lo, hi = config.data.prompt_tokens
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:rng.randint(lo, hi)]
        if ids:
            out.append(tokenizer.decode(ids))
    return out


def _build(config: HFSuiteConfig, target: Path, device: str) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from evaluators.hf import generate, prompt_text, reward_scores

    d = config.data
    rng = random.Random(d.seed)
    policy_path = resolve_model(config.model.policy)
    reward_path = resolve_model(config.reward.model) if config.reward.model else None
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_rows = load_rows(d.dataset, d.config_name, d.split).shuffle(seed=d.seed)
    n_pairs = d.train_pairs + d.heldout_pairs
    model = None

    def answer(prompts: list[Any], draw: int = 0) -> list[str]:
        nonlocal model
        if model is None:
            model = AutoModelForCausalLM.from_pretrained(policy_path).to(device).eval()
        set_seed(d.seed * 1000 + draw)
        return generate(model, tokenizer, [prompt_text(p, tokenizer) for p in prompts], _gen_config(config))[0]

    def rewards(prompts: list[Any], answers: list[str]) -> list[float]:
        return reward_scores(reward_path, prompts, answers, config.reward.batch_size, device, config.reward.label)

    if d.source == "pairs":
        take = train_rows.select(range(min(n_pairs, len(train_rows))))
        if d.prompt_column not in take.column_names and {"chosen", "rejected"} <= set(take.column_names):
            from trl.data_utils import extract_prompt  # implicit prompt: the shared start of both answers

            take = take.map(extract_prompt).rename_column("prompt", d.prompt_column)
        prompts = _column(take, d.prompt_column, d.dataset)
        pairs = [{"prompt": p, "chosen": c, "rejected": r}
                 for p, c, r in zip(prompts, _column(take, "chosen", d.dataset), _column(take, "rejected", d.dataset))]
        rest = train_rows.select(range(len(take), len(train_rows)))
        rest_prompts = _column(rest, d.prompt_column, d.dataset) if len(rest) and d.prompt_column in rest.column_names else []
    else:
        texts = _column(train_rows, d.text_column, d.dataset)
        prompts = _cut_prompts(texts[:n_pairs], tokenizer, config, rng)
        samples = [answer(prompts, k) for k in range(d.samples_per_prompt)]
        scores = [rewards(prompts, s) for s in samples]
        pairs = []
        for i, prompt in enumerate(prompts):
            ranked = sorted(range(d.samples_per_prompt), key=lambda k: scores[k][i])
            best, worst = ranked[-1], ranked[0]
            if scores[best][i] > scores[worst][i]:
                pairs.append({"prompt": prompt, "chosen": " " + samples[best][i], "rejected": " " + samples[worst][i],
                              "score_margin": scores[best][i] - scores[worst][i]})
        rest_prompts = _cut_prompts(texts[n_pairs:n_pairs + d.eval_prompts], tokenizer, config, rng)
    if len(pairs) < 2:
        raise ValueError(f"{d.dataset}: only {len(pairs)} preference pairs; need at least 2")
    heldout = max(1, min(d.heldout_pairs, len(pairs) // 5))
    train, held = pairs[heldout:][:d.train_pairs], pairs[:heldout]

    references: list[str] | None = None
    if d.eval_dataset is not None:
        rows = load_rows(d.eval_dataset, d.eval_config_name, d.eval_split)
        rows = rows.select(range(min(d.eval_prompts, len(rows))))
        column = d.eval_prompt_column or (d.prompt_column if d.source == "pairs" else d.text_column)
        eval_prompts = _column(rows, column, d.eval_dataset)
        if d.source == "generate":
            eval_prompts = _cut_prompts(eval_prompts, tokenizer, config, rng)
        if d.reference_column:
            references = [str(x) for x in _column(rows, d.reference_column, d.eval_dataset)][:len(eval_prompts)]
    else:
        if d.reference_column:
            raise ValueError("data.reference_column needs data.eval_dataset (the answers live there)")
        eval_prompts = rest_prompts[:d.eval_prompts] or [p["prompt"] for p in held]
    eval_prompts = [_as_chat(p, tokenizer) for p in eval_prompts]
    if not eval_prompts:
        raise ValueError(f"{d.dataset}: no evaluation prompts; set data.eval_dataset or lower data.train_pairs")
    if references is None:
        references = answer(eval_prompts, d.samples_per_prompt)
    ref_rewards = rewards(eval_prompts, references) if reward_path else [None] * len(eval_prompts)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    _write_jsonl(target / "train.jsonl", train)
    _write_jsonl(target / "heldout.jsonl", held)
    _write_jsonl(target / "eval.jsonl", [{"prompt": p, "reference": a, "reference_reward": r}
                                         for p, a, r in zip(eval_prompts, references, ref_rewards)])
    finite = [r for r in ref_rewards if r is not None]
    meta = {"format": FORMAT, "policy_path": policy_path, "reward_path": reward_path,
            "train_pairs": len(train), "heldout_pairs": len(held), "eval_prompts": len(eval_prompts),
            "reference_answers": "dataset" if d.reference_column else "reference model",
            "reference_reward": sum(finite) / len(finite) if finite else None, "config": config.prepared_part()}
    (target / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def ensure_prepared(config: HFSuiteConfig, cache_dir: Path | str, device: str | None = None) -> tuple[Path, dict]:
    """(directory, meta) of the group's prepared data, building it first if it is not cached.

    Built in a temporary sibling directory and renamed into place, so a crash leaves no partial
    entry; a read-only cache (inside the sandbox) with no entry is an error that names the fix.
    """
    target = prepared_dir(config, cache_dir)
    if (target / "meta.json").exists():
        return target, json.loads((target / "meta.json").read_text())
    with _BUILD_LOCK:
        return _ensure_locked(config, cache_dir, device, target)


def _ensure_locked(config: HFSuiteConfig, cache_dir: Path | str, device: str | None, target: Path) -> tuple[Path, dict]:
    if (target / "meta.json").exists():  # built by another thread while this one waited
        return target, json.loads((target / "meta.json").read_text())
    if not os.access(Path(cache_dir), os.W_OK) and Path(cache_dir).exists():
        raise RuntimeError(f"hf data for this group is not prepared in the read-only cache {cache_dir}: the "
                           "parent prepares it (evaluators.jobs:prepare_evaluate) before a sandboxed job runs")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        meta = _build(config, scratch, _device(device, config))
        os.chmod(scratch, 0o755)  # mkdtemp made it 0700: sandboxed runs (another uid as root) must read it
        try:
            os.rename(scratch, target)
        except OSError:  # built concurrently by another process: keep theirs
            if not (target / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target, json.loads((target / "meta.json").read_text())


# ---- tier hooks (evaluators.tiers) ------------------------------------------------------------------

def prepare_spec(spec: Any, cache_dir: Path | str, device: str | None) -> None:
    """Parent side: build the prepared data of ``spec``'s group (a no-op once cached)."""
    ensure_prepared(HFSuiteConfig.from_dict(spec.config), cache_dir, device)


def read_paths(spec: Any) -> list[str]:
    """Local files and directories a sandboxed run of ``spec`` reads besides the cache: local
    models, and the Hugging Face hub cache when a model comes from the hub."""
    config = HFSuiteConfig.from_dict(spec.config)
    paths: list[str] = []
    for name in (config.model.policy, config.reward.model):
        if not name:
            continue
        if is_local(name):
            paths.append(str(Path(name).expanduser().resolve()))
        else:
            from huggingface_hub import constants

            paths.append(str(constants.HF_HUB_CACHE))
    return sorted(set(paths))
