"""Fixtures for the evaluator tests: a session-wide tmp reference cache (CI stays clean and the
SFT'd references are built once per session) and tiny suite configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Runs are single-threaded inside evaluate_loss; tier functions called directly match it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prefdisco-cache")


def dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
        reference_rejected_logps, beta):
    """Inline DPO (test double of the registry's one, so tests do not depend on its state)."""
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * margin)


def sign_flipped_dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                     reference_rejected_logps, beta):
    return -dpo(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                reference_rejected_logps, beta)


def constant(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
             reference_rejected_logps, beta):
    return torch.zeros_like(policy_chosen_logps)


MICRO_LM: dict[str, Any] = {
    "model": {"n_layer": 1, "n_embd": 32, "n_head": 2},
    "sft": {"steps": 20, "batch_size": 32, "corpus": 256},
    "data": {"train_pairs": 64, "heldout_pairs": 32, "eval_prompts": 32},
    "train": {"steps": 4, "batch_size": 16, "log_every": 2},
}


def suite_dict(groups: list[dict[str, Any]], name: str = "test") -> dict[str, Any]:
    return {"name": name, "groups": groups}
