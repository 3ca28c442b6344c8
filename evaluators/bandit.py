"""Tier "bandit": a contextual bandit with exact metrics, for screening in well under a second.

Each of ``prompts`` prompts has ``responses`` candidate responses with gold utilities
u ~ N(0, 1). The reference is a softmax policy over logits ``ref_scale * N(0, 1)`` that are
correlated ``reward_corr`` with the utilities (0 = the reference knows nothing). Pairs are two
responses drawn from the reference for a random prompt, labelled by Bradley-Terry on u (then
flipped with the label-noise rate). The policy is a table of logits initialised at the
reference, so its per-"sequence" log-prob is log softmax(theta)[prompt, response] -- exactly
what a candidate loss sees in an LM. Gold reward, KL and win rate are computed exactly (no
sampling), which keeps the screen noise-free. Reward range = mean over prompts of max u - min u.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from evaluators.results import RunResult
from evaluators.suites import RunSpec
from evaluators.training import bradley_terry_labels, run_seed, train_preference
from evaluators.typed_config import Config, build_dataclass


@dataclass(frozen=True)
class BanditConfig(Config):
    prompts: int = 256             # contexts
    responses: int = 16            # candidate responses per context
    pairs: int = 4096              # training preference pairs (sampled from the reference)
    heldout_pairs: int = 1024      # pairs for the implicit-reward accuracy metric
    ref_scale: float = 1.0         # std of the reference logits
    reward_corr: float = 0.0       # correlation of reference logits with the utilities
    label_temperature: float = 0.25
    steps: int = 300
    batch_size: int = 64
    lr: float = 0.05
    grad_clip: float = 10.0
    diverge_kl: float = 20.0       # KL (nats) beyond which the run is flagged "diverged"

    @classmethod
    def from_spec(cls, spec: RunSpec) -> "BanditConfig":
        """One flat config from a group's task_params, ``bandit:`` and ``train:`` sections."""
        raw = dict(spec.task_params)
        raw.update(spec.config.get("bandit", {}))
        raw.update(spec.config.get("train", {}))
        return build_dataclass(cls, raw, "bandit")


def _problem(cfg: BanditConfig, seed: int) -> dict[str, torch.Tensor]:
    """Utilities, reference logits and pairs for one seed (independent of noise and beta)."""
    g = torch.Generator().manual_seed(run_seed("bandit-problem", seed))
    u = torch.randn(cfg.prompts, cfg.responses, generator=g)
    noise = torch.randn(cfg.prompts, cfg.responses, generator=g)
    z = cfg.reward_corr * u + math.sqrt(max(0.0, 1 - cfg.reward_corr ** 2)) * noise
    ref_logits = cfg.ref_scale * z
    ref_probs = torch.softmax(ref_logits, dim=-1)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p = torch.randint(cfg.prompts, (n,), generator=g)
        ab = torch.multinomial(ref_probs[p], 2, replacement=True, generator=g)
        return p, ab[:, 0], ab[:, 1]

    train = draw(cfg.pairs)
    heldout = draw(cfg.heldout_pairs)
    return {"u": u, "ref_logits": ref_logits, "train": train, "heldout": heldout}


def run_bandit(spec: RunSpec, loss_fn: Callable[..., Any], loss_kwargs: dict[str, Any],
               cache_dir: Any = None, device: str | None = None) -> RunResult:
    """One bandit run (CPU, no cache: the problem is regenerated from the seed in milliseconds)."""
    start = time.perf_counter()
    cfg = BanditConfig.from_spec(spec)
    prob = _problem(cfg, spec.seed)
    u, ref_logits = prob["u"], prob["ref_logits"]
    ref_logp = torch.log_softmax(ref_logits, dim=-1)
    p, a, b = prob["train"]
    label_gen = torch.Generator().manual_seed(run_seed("bandit-labels", spec.seed, spec.noise))
    a_wins = bradley_terry_labels(u[p, a], u[p, b], cfg.label_temperature, spec.noise, label_gen)
    chosen = torch.where(a_wins, a, b)
    rejected = torch.where(a_wins, b, a)

    theta = ref_logits.clone().requires_grad_(True)

    def policy_logps(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logp = torch.log_softmax(theta[p[idx]], dim=-1)
        return (logp.gather(1, chosen[idx, None]).squeeze(1),
                logp.gather(1, rejected[idx, None]).squeeze(1))

    outcome = train_preference(
        parameters=[theta], policy_logps=policy_logps,
        reference_chosen=ref_logp[p, chosen], reference_rejected=ref_logp[p, rejected],
        loss_fn=loss_fn, beta=spec.beta, loss_kwargs=loss_kwargs, steps=cfg.steps,
        batch_size=cfg.batch_size, lr=cfg.lr, grad_clip=cfg.grad_clip, weight_decay=0.0,
        generator=torch.Generator().manual_seed(run_seed("bandit-order", spec.seed, spec.noise)),
    )

    with torch.no_grad():
        pol_logp = torch.log_softmax(theta.detach(), dim=-1)
        pol = pol_logp.exp()
        ref = ref_logp.exp()
        gold = float((pol * u).sum(-1).mean())
        ref_reward = float((ref * u).sum(-1).mean())
        kl = float((pol * (pol_logp - ref_logp)).sum(-1).mean())
        beats = (u[:, :, None] > u[:, None, :]).double() + 0.5 * (u[:, :, None] == u[:, None, :]).double()
        win = float(torch.einsum("pa,pb,pab->p", pol.double(), ref.double(), beats).mean())
        hp, ha, hb = prob["heldout"]
        implicit = pol_logp - ref_logp
        margin = (implicit[hp, ha] - implicit[hp, hb]) * torch.sign(u[hp, ha] - u[hp, hb])
        keep = u[hp, ha] != u[hp, hb]
        accuracy = float(((margin > 0).double() + 0.5 * (margin == 0).double())[keep].mean())
        reward_range = float((u.max(-1).values - u.min(-1).values).mean())

    flags = list(outcome.flags)
    if not all(math.isfinite(x) for x in (gold, kl, win)):
        flags.append("nan")
    elif kl > cfg.diverge_kl:
        flags.append("diverged")
    return RunResult(
        task=spec.task, tier="bandit", seed=spec.seed, beta=spec.beta, noise=spec.noise,
        gold_reward=gold, kl=kl, win_rate=win, accuracy=accuracy, flags=flags,
        wall_time_s=time.perf_counter() - start, curve=outcome.curve,
        extra={"reference_reward": ref_reward, "reward_range": reward_range,
               "steps_done": outcome.steps_done, "message": outcome.message,
               "config": asdict(cfg)},
    )
