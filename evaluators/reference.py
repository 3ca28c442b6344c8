"""The SFT'd reference policy of a (task, seed, model/SFT/data config) and everything derived
from it that does not depend on the candidate loss: sampled preference pairs with their gold
rewards and reference log-probs, held-out pairs, evaluation prompts with reference samples.

Built once and cached as one file under ``<cache_dir>/tinylm/`` with its SHA-256 beside it
(``<file>.sha256``). Only trusted processes write the cache: the campaign's parent process builds
what a job will need before the job starts (``prepare_references``, called from a job's
``prepare_in_parent``) and hands the job the content hashes; the sandbox sees the cache
read-only. Every load checks the bytes against the expected hash (the parent's, else the
sidecar's) and rebuilds on a mismatch, so a corrupted or replaced file is never trained on.
Writes are atomic (tmp file + ``os.replace``) and serialised by a lock file.
Labels are NOT cached: label noise is a per-run parameter.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from evaluators.lm import Vocab, build_model, response_logps, sample
from evaluators.paths import default_cache_dir  # noqa: F401 - the cache location, re-exported
from evaluators.tasks import TextTask
from evaluators.tinylm_config import TinyLMConfig
from evaluators.training import run_seed

CACHE_VERSION = 2  # 2: content hashes beside each bundle; parent-only writes
HASH_SUFFIX = ".sha256"
log = logging.getLogger("evaluators.reference")
_expected_hashes: dict[str, str] = {}   # file name -> sha256, handed over by a trusted parent
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def cache_key(task: TextTask, seed: int, cfg: TinyLMConfig, device: str) -> str:
    from dataclasses import asdict

    ident = {"v": CACHE_VERSION, "task": task.name, "params": task.params(), "seed": seed,
             "model": asdict(cfg.model), "sft": asdict(cfg.sft), "data": asdict(cfg.data),
             "device": device.split(":")[0]}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _encode(task: TextTask, vocab: Vocab, prompts: list[list[str]], responses: list[list[str]]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = task.max_response_len + 1
    prefix = torch.tensor([vocab.prefix(p) for p in prompts], dtype=torch.long)
    enc = [vocab.encode_response(r, width) for r in responses]
    resp = torch.tensor([e[0] for e in enc], dtype=torch.long)
    length = torch.tensor([e[1] for e in enc], dtype=torch.long)
    return prefix, resp, length


def rewards_of(task: TextTask, vocab: Vocab, prefix: torch.Tensor, resp: torch.Tensor,
               length: torch.Tensor) -> torch.Tensor:
    """Gold reward of each (prompt, sampled response) pair."""
    out = []
    for p, r, n in zip(prefix.tolist(), resp.tolist(), length.tolist()):
        prompt = [vocab.tokens[i] for i in p[1:-1]]
        out.append(task.gold_reward(prompt, vocab.decode_response(r, n)))
    return torch.tensor(out, dtype=torch.float64)


def _sft(model: torch.nn.Module, task: TextTask, vocab: Vocab, cfg: TinyLMConfig, seed: int,
         device: str) -> list[float]:
    rng = random.Random(run_seed("sft-corpus", task.name, seed))
    prompts = [task.sample_prompt(rng) for _ in range(cfg.sft.corpus)]
    responses = [task.sample_sft_response(p, rng) for p in prompts]
    prefix, resp, length = (t.to(device) for t in _encode(task, vocab, prompts, responses))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.sft.lr, weight_decay=cfg.sft.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 1.0 - 0.9 * s / max(1, cfg.sft.steps))
    gen = torch.Generator().manual_seed(run_seed("sft-order", seed))
    curve = []
    model.train()
    for step in range(cfg.sft.steps):
        idx = torch.randint(cfg.sft.corpus, (cfg.sft.batch_size,), generator=gen).to(device)
        with _autocast(device):
            logp = response_logps(model, prefix[idx], resp[idx], length[idx])
        loss = -logp.sum() / length[idx].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 20 == 0 or step == cfg.sft.steps - 1:
            curve.append(float(loss.detach()))
    model.eval()
    return curve


def _autocast(device: str):
    """bf16 autocast on CUDA, plain fp32 on CPU."""
    import contextlib

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_reference(task: TextTask, seed: int, cfg: TinyLMConfig, device: str) -> dict[str, Any]:
    start = time.perf_counter()
    vocab = Vocab(task.vocabulary())
    width = task.max_response_len + 1
    n_positions = 1 + task.prompt_len + 1 + width
    model = build_model(len(vocab), n_positions, cfg.model, run_seed("init", seed)).to(device)
    sft_curve = _sft(model, task, vocab, cfg, seed, device)
    gen = torch.Generator().manual_seed(run_seed("reference-samples", task.name, seed))
    rng = random.Random(run_seed("prompts", task.name, seed))

    def prefixes(n: int) -> torch.Tensor:
        return torch.tensor([vocab.prefix(task.sample_prompt(rng)) for _ in range(n)],
                            dtype=torch.long, device=device)

    bundle: dict[str, Any] = {}
    with torch.no_grad(), _autocast(device):
        for split, n in (("train", cfg.data.train_pairs), ("heldout", cfg.data.heldout_pairs)):
            prefix = prefixes(n)
            a, a_len = sample(model, prefix, width, gen)
            b, b_len = sample(model, prefix, width, gen)
            bundle[split] = {
                "prefix": prefix.cpu(), "a": a.cpu(), "a_len": a_len.cpu(), "b": b.cpu(),
                "b_len": b_len.cpu(),
                "ra": rewards_of(task, vocab, prefix.cpu(), a.cpu(), a_len.cpu()),
                "rb": rewards_of(task, vocab, prefix.cpu(), b.cpu(), b_len.cpu()),
                "ref_a": response_logps(model, prefix, a, a_len).float().cpu(),
                "ref_b": response_logps(model, prefix, b, b_len).float().cpu(),
            }
        prefix = prefixes(cfg.data.eval_prompts)
        resp, length = sample(model, prefix, width, gen)
        ref_reward = rewards_of(task, vocab, prefix.cpu(), resp.cpu(), length.cpu())
        bundle["eval"] = {"prefix": prefix.cpu(), "resp": resp.cpu(), "len": length.cpu(),
                          "reward": ref_reward}
    bundle["model"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    bundle["meta"] = {
        "task": task.name, "params": task.params(), "seed": seed, "vocab": vocab.tokens,
        "n_positions": n_positions, "sft_curve": sft_curve,
        "reference_reward": float(ref_reward.mean()),
        "n_params": sum(p.numel() for p in model.parameters()),
        "build_time_s": time.perf_counter() - start,
    }
    return bundle


def reference_path(task: TextTask, seed: int, cfg: TinyLMConfig, cache_dir: Path | str,
                   device: str) -> Path:
    return Path(cache_dir) / "tinylm" / f"{task.name}-s{seed}-{cache_key(task, seed, cfg, device)}.pt"


def trust_hashes(hashes: dict[str, str]) -> None:
    """Content hashes a trusted parent computed for the bundles this process will load."""
    _expected_hashes.update({str(k): str(v) for k, v in hashes.items()})


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + HASH_SUFFIX)


def _verified_bytes(path: Path) -> bytes | None:
    """The bundle's bytes if they match the expected hash (parent's, else the sidecar's)."""
    expected = _expected_hashes.get(path.name)
    try:
        if expected is None:
            expected = _sidecar(path).read_text().strip()
        data = path.read_bytes()
    except OSError:
        return None
    if _sha256(data) != expected:
        log.warning("reference cache %s does not match its content hash; rebuilding it", path)
        return None
    return data


def _load(data: bytes) -> dict[str, Any]:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _write(path: Path, bundle: dict[str, Any]) -> str:
    """Write bundle + sidecar atomically (readable by the sandbox's uid); return the hash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o755)
    buffer = io.BytesIO()
    torch.save(bundle, buffer)
    data = buffer.getvalue()
    digest = _sha256(data)
    for target, payload in ((_sidecar(path), digest.encode()), (path, data)):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=target.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return digest


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """One builder per bundle: a thread lock here, a file lock across processes."""
    with _locks_guard:
        lock = _locks.setdefault(str(path), threading.Lock())
    with lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_reference(task: TextTask, seed: int, cfg: TinyLMConfig, cache_dir: Path | str,
                     device: str) -> str:
    """Build and write the bundle unless a verified one exists (trusted callers); its sha256."""
    path = reference_path(task, seed, cfg, cache_dir, device)
    with _build_lock(path):
        data = _verified_bytes(path)
        if data is not None:
            return _sha256(data)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in the sandbox: the same bundle wherever it is built
        try:
            return _write(path, build_reference(task, seed, cfg, device))
        finally:
            torch.set_num_threads(threads)


def load_or_build_reference(task: TextTask, seed: int, cfg: TinyLMConfig, cache_dir: Path,
                            device: str) -> dict[str, Any]:
    path = reference_path(task, seed, cfg, cache_dir, device)
    data = _verified_bytes(path)
    if data is not None:
        return _load(data)
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        # A read-only cache (inside the sandbox) that nobody prepared: build, use, do not keep.
        log.warning("reference %s is not in the (read-only) cache; building it for this run only",
                    path.name)
        return build_reference(task, seed, cfg, device)
    ensure_reference(task, seed, cfg, cache_dir, device)
    data = _verified_bytes(path)
    if data is None:
        raise RuntimeError(f"reference cache {path} changed while it was being written")
    return _load(data)


def prepare_references(suite: Any, cache_dir: Path | str, device: str) -> dict[str, str]:
    """Build (in this trusted process) every bundle ``suite`` needs; {file name: sha256}.

    Tiers say what they need through their ``Tier.references`` function (``evaluators.tiers``).
    """
    from evaluators.tiers import get_tier

    hashes: dict[str, str] = {}
    for spec in suite.instances():
        prepare = get_tier(spec.tier).prepare_function()
        if prepare is not None:  # loss-independent data of the tier (hf: pairs, prompts, reference answers)
            prepare(spec, cache_dir, device)
        references = get_tier(spec.tier).references_function()
        if references is None:
            continue
        for task, seed, cfg in references(spec, cache_dir):
            path = reference_path(task, seed, cfg, cache_dir, device)
            if path.name not in hashes:
                hashes[path.name] = ensure_reference(task, seed, cfg, cache_dir, device)
    return hashes
