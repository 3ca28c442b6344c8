"""Noise-aware refinement inside TRL: a per-example ``smoothing`` column and a batch-wise confidence check.

``SmoothingDPOTrainer`` is ``evaluators.hf_trainer.PreferenceLossDPOTrainer`` whose contract loss
is label-smoothed per example (``refinement.smoothed_loss``: (1-eps) L(pc,pr,rc,rr) + eps
L(pr,pc,rr,rc)). The dataset column ``smoothing`` carries each pair's epsilon, the same way
``weight`` carries its weight:

* without a ``BatchRefiner`` the column is applied as is (static label smoothing);
* with one (SPA), the column is the epsilon a pair *may* get (alpha for self-labelled pairs, 0 for
  the gold seed) and it is applied only to pairs flagged low-confidence in the current batch, as
  the tinylm rounds do: margin beta*h of the current policy (with DND: of the extrapolated model
  softmax((1+lam) z_theta - lam z_ref), token by token) below the running K-quantile tau, and no
  smoothing during the first ``warmup_fraction`` of the steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from evaluators.hf_trainer import NON_MODEL_KEYS, PreferenceLossDPOTrainer, WeightedPreferenceCollator
from preference_data.spa.refinement import (
    ConfidenceThreshold,
    ReleasedThreshold,
    alpha_at,
    dpo_margins,
    extrapolated_sequence_logps,
    make_threshold,
    smoothed_loss,
)

EXTRA_COLUMNS = ("smoothing", "pair_index")


@dataclasses.dataclass
class SmoothingPreferenceCollator(WeightedPreferenceCollator):
    """TRL's preference collator plus ``weight``, ``smoothing`` (float) and ``pair_index`` (int)."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().torch_call(examples)
        if "smoothing" in examples[0]:
            batch["smoothing"] = torch.tensor([float(e["smoothing"]) for e in examples])
        if "pair_index" in examples[0]:
            batch["pair_index"] = torch.tensor([int(e["pair_index"]) for e in examples])
        return batch


@dataclass
class BatchRefiner:
    """Flags low-confidence pairs per batch and remembers each pair's last confidence / epsilon."""

    beta: float
    noise_fraction: float
    warmup_fraction: float
    window: int
    dnd_lambda: float | None = None      # None: plain margin of the current policy
    rule: str = "released"               # refinement.threshold (see refinement.make_threshold)
    threshold: ConfidenceThreshold | ReleasedThreshold = field(init=False)
    confidence: dict[int, float] = field(default_factory=dict)
    smoothing: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.threshold = make_threshold(self.rule, self.noise_fraction, self.window)

    def epsilon(self, margins: torch.Tensor, may_smooth: torch.Tensor, pair_index: torch.Tensor | None,
                step: int, total_steps: int) -> torch.Tensor:
        """Per-pair epsilon: ``may_smooth`` where flagged (after warm-up), 0 elsewhere."""
        eligible = may_smooth > 0
        if not bool(eligible.any()):
            return torch.zeros_like(may_smooth)
        _, flags = self.threshold.flag(margins, eligible)
        eps = torch.where(flags, may_smooth, torch.zeros_like(may_smooth)) * alpha_at(step, total_steps, 1.0,
                                                                                     self.warmup_fraction)
        if pair_index is not None:
            for k, i in enumerate(pair_index.tolist()):
                if eligible[k]:
                    self.confidence[i], self.smoothing[i] = float(margins[k]), float(eps[k])
        return eps


class SmoothingDPOTrainer(PreferenceLossDPOTrainer):
    """``PreferenceLossDPOTrainer`` with per-example label smoothing from a ``smoothing`` column."""

    def __init__(self, *args: Any, loss_fn: Callable[..., torch.Tensor], loss_kwargs: dict[str, Any] | None = None,
                 refiner: BatchRefiner | None = None, **kwargs: Any) -> None:
        self.contract_loss = loss_fn
        self.refiner = refiner
        self._may_smooth: torch.Tensor | None = None
        self._pair_index: torch.Tensor | None = None
        self._dnd_logps: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__(*args, loss_fn=self._smoothed_loss, loss_kwargs=loss_kwargs, **kwargs)
        if type(self.data_collator) is WeightedPreferenceCollator:
            fields = dataclasses.fields(WeightedPreferenceCollator)
            self.data_collator = SmoothingPreferenceCollator(
                **{f.name: getattr(self.data_collator, f.name) for f in fields})

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        self._signature_columns = [*self._signature_columns,
                                   *(c for c in EXTRA_COLUMNS if c not in self._signature_columns)]

    @torch.no_grad()
    def _extrapolated_logps(self, model: torch.nn.Module, inputs: dict[str, Any], lam: float
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed completion log-probs under softmax((1+lam) z_policy - lam z_ref), chosen and rejected."""
        model_kwargs = {k: v for k, v in inputs.items() if k not in NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        policy_logits = model(**model_kwargs).logits[:, :-1]
        reference_logits = self.ref_model(**model_kwargs).logits[:, :-1]
        tokens, mask = inputs["input_ids"][:, 1:], inputs["completion_mask"][:, 1:].float()
        return extrapolated_sequence_logps(policy_logits, reference_logits, tokens, mask, lam).chunk(2)

    def _compute_loss(self, model, inputs, return_outputs=False):
        self._may_smooth = inputs.pop("smoothing", None)
        self._pair_index = inputs.pop("pair_index", None)
        self._dnd_logps = None
        refine = self.refiner is not None and model.training and self._may_smooth is not None
        if refine and self.refiner.dnd_lambda is not None and self.ref_model is not None \
                and bool((self._may_smooth > 0).any()):
            self._dnd_logps = self._extrapolated_logps(model, inputs, self.refiner.dnd_lambda)
        try:
            return super()._compute_loss(model, inputs, return_outputs)
        finally:
            self._may_smooth = self._pair_index = self._dnd_logps = None

    def _smoothed_loss(self, policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
                       reference_chosen: torch.Tensor, reference_rejected: torch.Tensor, beta: float,
                       **loss_kwargs: Any) -> torch.Tensor:
        eps = self._may_smooth
        if eps is None:
            return self.contract_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected,
                                      beta, **loss_kwargs)
        eps = eps.to(policy_chosen.device, torch.float32)
        if self.refiner is not None and self.model.training:
            pc, pr = self._dnd_logps or (policy_chosen.detach(), policy_rejected.detach())
            margins = dpo_margins(pc.float(), pr.float(), reference_chosen.float(), reference_rejected.float(),
                                  self.refiner.beta)
            eps = self.refiner.epsilon(margins, eps, self._pair_index, self.state.global_step,
                                       max(1, self.state.max_steps))
        return smoothed_loss(self.contract_loss, policy_chosen, policy_rejected, reference_chosen,
                             reference_rejected, beta, eps, loss_kwargs)
