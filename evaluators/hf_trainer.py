"""TRL's DPOTrainer with its loss replaced by a prefdisco contract function, trained granularly.

TRL 1.16 computes every built-in loss inline in ``DPOTrainer._compute_loss`` and offers no hook, so
this subclass owns that method: one policy forward, the per-sequence log-probs, the reference
log-probs (TRL's own ``compute_ref_log_probs``), the loss, and the metrics TRL logs. Granularity
comes from optional dataset columns (see ``evaluators.granular.prepare_granular_dataset``):

* ``weight`` (float): the batch loss is ``sum(weight * loss) / sum(weight)``;
* ``group_id`` (int) with ``group_names=[...]``: per-group losses are logged
  (``group_loss/<name>``), and with ``group_robust_eta > 0`` the objective is Group Robust
  Preference Optimisation, ``sum_g alpha_g L_g`` with alpha updated by exponentiated gradient
  (logged as ``group_alpha/<name>``), so the worst-off group drives training.

``prefdisco export --to trl`` copies this module's code, and that of ``evaluators.granular``,
verbatim into the exported file, so both stay self-contained: imports at the top, nothing
prefdisco-specific below them.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable

import torch
import trl
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from evaluators.granular import GroupRobustReducer, group_mean_losses, weighted_mean

# `_compute_loss` below mirrors this TRL version's DPOTrainer internals (fused LM head, metrics).
WRITTEN_FOR_TRL = "1.16"
# Batch keys that are not model inputs.
NON_MODEL_KEYS = frozenset({"completion_mask", "ref_chosen_logps", "ref_rejected_logps", "weight", "group_id"})


@dataclasses.dataclass
class WeightedPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator, plus ``weight`` and ``group_id`` tensors when examples carry them."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().torch_call(examples)
        if "weight" in examples[0]:
            batch["weight"] = torch.tensor([float(example["weight"]) for example in examples])
        if "group_id" in examples[0]:
            batch["group_id"] = torch.tensor([int(example["group_id"]) for example in examples], dtype=torch.long)
        return batch


class PreferenceLossDPOTrainer(DPOTrainer):
    """DPOTrainer training with ``loss_fn(policy_chosen_logps, policy_rejected_logps,
    reference_chosen_logps, reference_rejected_logps, beta, **loss_kwargs) -> Tensor[batch]``.

    The batch loss is ``mean(losses)``, or ``sum(weight * losses) / sum(weight)`` when the dataset
    has a ``weight`` column, or the group-robust ``sum_g alpha_g L_g`` when ``group_robust_eta > 0``
    and the dataset has ``group_id``. ``args.loss_type`` and TRL's other loss options are not used.
    """

    loss_fn: Callable[..., torch.Tensor] | None = None  # subclasses may set it as a staticmethod
    default_loss_kwargs: dict[str, Any] = {}

    def __init__(
        self,
        *args: Any,
        loss_fn: Callable[..., torch.Tensor] | None = None,
        loss_kwargs: dict[str, Any] | None = None,
        group_names: list[str] | None = None,
        group_robust_eta: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self.group_names = list(group_names or [])
        if group_robust_eta < 0:
            raise ValueError("group_robust_eta must be >= 0 (0 turns the group-robust objective off)")
        if group_robust_eta > 0 and not self.group_names:
            raise ValueError("the group-robust objective needs group_names (and a group_id column)")
        self.group_reducer = GroupRobustReducer(len(self.group_names), group_robust_eta) if group_robust_eta > 0 else None
        if loss_fn is not None:
            self.loss_fn = loss_fn
        if self.loss_fn is None:
            raise ValueError("pass loss_fn=... (or subclass and set loss_fn)")
        self.loss_kwargs = {**self.default_loss_kwargs, **(loss_kwargs or {})}
        if not trl.__version__.startswith(WRITTEN_FOR_TRL + "."):
            warnings.warn(f"written for TRL {WRITTEN_FOR_TRL}.x, running on {trl.__version__}; check the logged loss",
                          stacklevel=2)
        super().__init__(*args, **kwargs)
        unsupported = {
            "loss_type": self.loss_types != ["sigmoid"],
            "ld_alpha": self.ld_alpha is not None,
            "f_divergence_type": self.f_divergence_type != "reverse_kl",
            "use_weighting": self.use_weighting,
        }
        if any(unsupported.values()):
            names = ", ".join(k for k, v in unsupported.items() if v)
            raise ValueError(f"{type(self).__name__} defines its own loss; leave DPOConfig's {names} at default")
        if type(self.data_collator) is DataCollatorForPreference:
            fields = dataclasses.fields(DataCollatorForPreference)
            self.data_collator = WeightedPreferenceCollator(
                **{f.name: getattr(self.data_collator, f.name) for f in fields}
            )

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        extra = [c for c in ("weight", "group_id") if c not in self._signature_columns]
        self._signature_columns = [*self._signature_columns, *extra]

    def _compute_loss(self, model, inputs, return_outputs=False):
        mode = "train" if self.model.training else "eval"
        completion_mask = inputs["completion_mask"]
        seq_len = completion_mask.size(1) - 1  # log-probs are for next-token predictions
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        model_kwargs = {k: v for k, v in inputs.items() if k not in NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        if self.aux_loss_enabled:
            model_kwargs["output_router_logits"] = True
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        chosen_logps, rejected_logps = outputs.log_probs[:, -seq_len:].sum(dim=1).chunk(2, dim=0)

        if self.precompute_ref_logps:
            ref_chosen_logps, ref_rejected_logps = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:  # TRL's helper; with PEFT and no ref_model it disables the adapter
            ref_inputs = {k: v for k, v in inputs.items() if k not in ("weight", "group_id")}
            reference = self.ref_model if self.ref_model is not None else self.model
            ref_chosen_logps, ref_rejected_logps = self.compute_ref_log_probs(reference, ref_inputs)

        losses = self.loss_fn(
            chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, self.beta, **self.loss_kwargs
        )
        if losses.shape != chosen_logps.shape:
            raise ValueError(f"loss_fn returned shape {tuple(losses.shape)}, expected {tuple(chosen_logps.shape)}")
        weight = inputs["weight"].to(losses.dtype) if "weight" in inputs else None
        groups = inputs.get("group_id")
        if self.group_reducer is not None and groups is not None and mode == "train":
            loss = self.group_reducer(losses, groups.to(losses.device), weight)
        else:
            loss = weighted_mean(losses, weight)
        if groups is not None and self.group_names:
            group_losses, present = group_mean_losses(losses.detach().float().cpu(), groups.cpu(),
                                                      len(self.group_names), None if weight is None else weight.cpu())
            for g, name in enumerate(self.group_names):
                if present[g]:
                    self._metrics[mode][f"group_loss/{name}"].append(group_losses[g].item())
                if self.group_reducer is not None and mode == "train":
                    self._metrics[mode][f"group_alpha/{name}"].append(float(self.group_reducer.alpha[g]))
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss

        chosen_rewards = self.beta * (chosen_logps - ref_chosen_logps).detach()
        rejected_rewards = self.beta * (rejected_logps - ref_rejected_logps).detach()
        metrics = {
            "rewards/chosen": chosen_rewards,
            "rewards/rejected": rejected_rewards,
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
            "rewards/margins": chosen_rewards - rejected_rewards,
            "logps/chosen": chosen_logps.detach(),
            "logps/rejected": rejected_logps.detach(),
        }
        for key, value in metrics.items():
            self._metrics[mode][key].append(self.accelerator.gather(value).mean().item())

        if return_outputs:  # `compute_metrics` wants logits, which the fused head does not build
            with torch.no_grad():
                outputs = model(**model_kwargs)
            return loss, outputs
        return loss
