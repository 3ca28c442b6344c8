"""SPA pair store: TRL-format export round-trip, per-iteration audit, config loading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from preference_data.spa.config import (SPAConfig, dump_spa_config, load_spa_config,
                                        spa_config_from_dict)
from preference_data.spa.store import LabelledPair, PairStore

REPO = Path(__file__).resolve().parents[2]


def _pairs() -> list[LabelledPair]:
    return [
        LabelledPair("s-0", 0, "the plot was", "great .", "bad .", "gold-seed", 0.97,
                     gold_chosen=0.6, gold_rejected=-0.5),
        LabelledPair("i1-0", 1, "the cast is", "fun !", "dull .", "implicit", 0.62, confidence=0.31,
                     gold_chosen=0.5, gold_rejected=-0.4),
        LabelledPair("i1-1", 1, "this music was", "slow .", "lovely .", "implicit", 0.55,
                     confidence=-0.02, flagged=True, smoothing=0.1, gold_chosen=0.0,
                     gold_rejected=0.6, extra={"lambda": 0.5}),
        LabelledPair("i1-2", 1, "this music was", "long .", "short .", "implicit", 0.5,
                     confidence=0.0, gold_chosen=0.0, gold_rejected=0.0),
    ]


def test_trl_export_round_trip(tmp_path):
    store = PairStore(_pairs())
    path = tmp_path / "pairs.jsonl"
    assert store.save_trl_jsonl(path) == 4
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:   # the project's TRL pair format
        assert set(row) == {"prompt", "chosen", "rejected", "weight", "group", "dimension", "provenance"}
        assert row["weight"] == 1.0 and row["provenance"]["source"] == "spa"
    assert rows[2]["provenance"]["flagged"] is True and rows[2]["provenance"]["label_prob"] == 0.55
    back = PairStore.load_trl_jsonl(path)
    assert back.pairs == store.pairs
    only_1 = tmp_path / "it1.jsonl"
    assert store.save_trl_jsonl(only_1, iterations=[1]) == 3
    with pytest.raises(ValueError):
        LabelledPair.from_trl({"prompt": "p", "chosen": "a", "rejected": "b", "provenance": {}})


def test_label_accuracy_ignores_ties():
    store = PairStore(_pairs())
    acc, decided, tied = store.label_accuracy(1)
    assert (acc, decided, tied) == (0.5, 2, 1)
    assert math.isnan(store.label_accuracy(5)[0])
    summary = {row["iteration"]: row for row in store.summary()}
    assert summary[1]["flagged"] == 1 and summary[0]["label_accuracy"] == 1.0


def test_config_defaults_unknown_keys_and_shipped_yaml(tmp_path):
    cfg = spa_config_from_dict({"data": {"seed_pairs": 100, "prompts_per_iteration": [400, 1000]},
                                "train": {"beta": 0.2}})
    assert isinstance(cfg, SPAConfig) and cfg.iterations == 2 and cfg.judge_beta() == 0.2
    assert abs(cfg.data.gold_fraction - 100 / 1500) < 1e-12
    with pytest.raises(ValueError, match="unknown key"):
        spa_config_from_dict({"refinement": {"alpah": 0.1}})
    with pytest.raises(ValueError, match="judge.kind"):
        spa_config_from_dict({"judge": {"kind": "oracle"}})
    shipped = load_spa_config(REPO / "configs" / "spa.yaml")
    again = tmp_path / "resolved.yaml"
    again.write_text(dump_spa_config(shipped))
    assert load_spa_config(again) == shipped
