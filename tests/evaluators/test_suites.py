from __future__ import annotations

import pytest

from evaluators import list_suites, load_suite
from evaluators.suites import suite_from_dict


def test_named_suites_load_and_have_runs() -> None:
    assert {"screen", "fitness", "heldout"} <= set(list_suites())
    for name in ("screen", "fitness", "heldout"):
        suite = load_suite(name)
        assert suite.name == name
        assert suite.instances(), name
    assert {g.tier for g in load_suite("screen").groups} == {"bandit"}
    assert {g.tier for g in load_suite("fitness").groups} == {"tinylm"}


def test_heldout_shares_no_instance_with_fitness() -> None:
    fitness = {s.instance for s in load_suite("fitness").instances()}
    heldout = {s.instance for s in load_suite("heldout").instances()}
    assert fitness and heldout
    assert not fitness & heldout
    # stricter: no (task, seed) pair and no (noise, beta) combination in common either
    assert not {(i[1], i[3]) for i in fitness} & {(i[1], i[3]) for i in heldout}
    assert not {(i[4], i[5]) for i in fitness} & {(i[4], i[5]) for i in heldout}


def test_unknown_suite_and_unknown_keys_are_errors() -> None:
    with pytest.raises(FileNotFoundError, match="known suites"):
        load_suite("no-such-suite")
    with pytest.raises(ValueError, match="unknown keys"):
        suite_from_dict({"name": "x", "groups": [{"tier": "bandit", "sedes": [0]}]})
    with pytest.raises(ValueError, match="tier"):
        suite_from_dict({"name": "x", "groups": [{"tier": "gpt5"}]})


def test_overrides_seeds_betas_lr() -> None:
    suite = load_suite("fitness")
    one = suite.with_overrides(seeds=1)
    assert all(len(g.seeds) == 1 for g in one.groups)
    four = suite.with_overrides(seeds=4)
    assert all(len(set(g.seeds)) == 4 for g in four.groups)
    assert four.groups[0].seeds[:2] == suite.groups[0].seeds[:2]
    b = suite.with_overrides(betas=0.3, lr=1e-4)
    assert all(g.betas == (0.3,) and g.config["train"]["lr"] == 1e-4 for g in b.groups)
    assert suite.groups[0].config["train"]["lr"] != 1e-4  # original untouched


def test_suite_from_path(tmp_path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ngroups:\n  - {tier: bandit, seeds: [3], betas: [0.2]}\n")
    suite = load_suite(str(path))
    assert suite.name == "mine" and suite.instances()[0].seed == 3


def test_tier_registry_resolves_builtin_and_registered_tiers() -> None:
    from evaluators.bandit import run_bandit
    from evaluators.tiers import get_tier, registered_tiers
    from evaluators.tinylm import run_tinylm
    from preference_data.pluralistic import run_pluralistic
    from preference_data.spa.tier import run_spa_tier

    assert get_tier("bandit").run_function() is run_bandit and get_tier("tinylm").run_function() is run_tinylm
    # preference_data's tiers arrive through the prefdisco.tiers entry points, not by name in evaluators
    assert get_tier("spa").run_function() is run_spa_tier
    assert get_tier("pluralistic").run_function() is run_pluralistic
    assert list(registered_tiers())[:2] == ["bandit", "tinylm"]


def test_a_group_may_hold_only_its_tiers_sections() -> None:
    # a section the tier would not read is refused at load time (it used to be dropped silently)
    with pytest.raises(ValueError, match="unknown keys.*model"):
        suite_from_dict({"name": "x", "groups": [{"tier": "bandit", "model": {"n_layer": 1}}]})
    with pytest.raises(ValueError, match="unknown keys.*bandit"):
        suite_from_dict({"name": "x", "groups": [{"tier": "tinylm", "task": "sentiment", "bandit": {"arms": 3}}]})
    with pytest.raises(ValueError, match="beta_aggregate"):
        suite_from_dict({"name": "x", "scoring": {"beta_aggregate": "median"}, "groups": [{"tier": "bandit"}]})


def test_tier_configs_refuse_unknown_keys_and_bad_choices() -> None:
    from evaluators.bandit import BanditConfig
    from evaluators.suites import RunSpec
    from evaluators.tinylm_config import TinyLMConfig

    spec = RunSpec(tier="bandit", task="bandit", seed=0, noise=0.0, beta=0.1, kl_budget=1.0,
                   config={"train": {"stepz": 3}})
    with pytest.raises(ValueError, match="unknown key.*stepz"):
        BanditConfig.from_spec(spec)
    with pytest.raises(ValueError, match="unknown key.*n_layers"):
        TinyLMConfig.from_dict({"model": {"n_layers": 3}})
    with pytest.raises(ValueError, match="expected int"):
        TinyLMConfig.from_dict({"train": {"steps": "many"}})
