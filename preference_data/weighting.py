"""Granular training helpers, re-exported from `evaluators.granular` where they live (the trainer
tiers need them, and evaluators must not import preference_data)."""

from evaluators.granular import (ALL_GROUPS, DIMENSION_TEMPLATE, GroupRobustReducer, condition_on_dimension,
                                 condition_pairs, example_scales, group_ids, group_mean_losses,
                                 group_robust_step, group_vocabulary, prepare_granular_dataset,
                                 weighted_mean, worst_group)

__all__ = ["ALL_GROUPS", "DIMENSION_TEMPLATE", "GroupRobustReducer", "condition_on_dimension", "condition_pairs",
           "example_scales", "group_ids", "group_mean_losses", "group_robust_step", "group_vocabulary",
           "prepare_granular_dataset", "weighted_mean", "worst_group"]
