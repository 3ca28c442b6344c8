"""The `hf` tier trained granularly on `prefdisco aggregate` pairs: weights, groups with the
group-robust objective and a per-group held-out report, and dimension-conditioned prompts."""

from __future__ import annotations

import pytest

from candidate_losses import get_loss
from evaluators.hf import HFTierConfig, _granular, _held_out_rows, run_hf_tier
from tests import tiny_hf


def _pairs(n: int) -> list[dict]:
    return [dict(p, group="north" if i % 3 else "south", dimension="tone" if i % 2 else "facts",
                 weight=1.0 + i % 2, provenance={"item_id": str(i)}) for i, p in enumerate(tiny_hf.review_pairs(n))]


def test_held_out_split_gives_every_group_pairs() -> None:
    """A small group is not left out of the held-out split by chance (the per-group report needs it)."""
    from datasets import Dataset
    rows = [dict(p, group="minority" if i < 3 else "majority") for i, p in enumerate(tiny_hf.review_pairs(30))]
    cfg = HFTierConfig(model="m", dataset="d")
    held = _held_out_rows(Dataset.from_list(rows[::-1]), cfg)  # the minority's three pairs come last
    groups = [rows[::-1][i]["group"] for i in held]
    assert groups.count("minority") == 1 and groups.count("majority") == 5
    assert _held_out_rows(Dataset.from_list([{k: v for k, v in r.items() if k != "group"} for r in rows]), cfg) \
        == list(range(6))


def test_granular_preparation_adds_group_ids_and_conditions_on_dimension(tmp_path) -> None:
    from datasets import Dataset
    train, held = Dataset.from_list(_pairs(12)), Dataset.from_list(_pairs(6))
    cfg = HFTierConfig(model="m", dataset="d", objective="group-robust", condition_on_dimension=True)
    t, h, groups = _granular(train, held, cfg)
    assert groups == ["north", "south"]
    assert set(t.column_names) == {"prompt", "chosen", "rejected", "weight", "group_id"}
    assert t[0]["prompt"].startswith("[facts] review :") and t[1]["prompt"].startswith("[tone] ")
    assert [r["group_id"] for r in t.select(range(3))] == [1, 0, 0]
    t, _, _ = _granular(train, held, HFTierConfig(model="m", dataset="d", objective="mean"))
    assert "weight" not in t.column_names and not t[0]["prompt"].startswith("[")
    one_group = Dataset.from_list([dict(p, group=None) for p in _pairs(4)])
    with pytest.raises(ValueError, match="at least two groups"):
        _granular(one_group, one_group, cfg)
    with pytest.raises(ValueError, match="objective.*is not one of"):
        HFTierConfig.from_dict({"objective": "fair"})


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_group_robust_hf_run_reports_every_group_with_or_without_precomputed_references(tmp_path) -> None:
    model = tiny_hf.build_tiny_gpt2(tmp_path / "model")
    data = tiny_hf.write_jsonl(tmp_path / "pairs.jsonl", _pairs(30))
    results = []
    for precompute in (False, True):
        cfg = HFTierConfig(model=str(model), dataset=str(data), steps=3, batch_size=4, learning_rate=1e-3,
                           objective="group-robust", group_robust_eta=1.0, condition_on_dimension=True,
                           precompute_ref_log_probs=precompute, max_new_tokens=4, eval_size=12, device="cpu")
        results.append(run_hf_tier(get_loss("dpo").fn, cfg))
    for result in results:
        extra = result["extra"]
        assert set(extra["per_group"]) == {"north", "south"} and extra["objective"] == "group-robust"
        assert sum(r["pairs"] for r in extra["per_group"].values()) == extra["eval_pairs"]
        assert extra["worst_group"]["group"] in ("north", "south")
        assert sum(extra["group_weights"].values()) == pytest.approx(1.0)
        assert extra["group_weights"]["north"] != pytest.approx(0.5, abs=1e-6)
        assert all(g["prompt"].startswith(("[tone] ", "[facts] ")) for g in extra["generations"])
    for group, row in results[0]["extra"]["per_group"].items():  # same numbers either way
        assert row == pytest.approx(results[1]["extra"]["per_group"][group], abs=1e-5)
