"""Executors: the shared-queue dispatcher, the local sandbox executor, and Ray (same archive as local)."""

from __future__ import annotations

import time

import pytest

from discovery.executors import EvaluationRequest, SlotExecutor, make_executor
from discovery.errors import UserError
from test_campaign import archive
from tiny_campaign import run_tiny_campaign

DPO_LIKE = ("def f(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,\n"
            "      reference_rejected_logps, beta):\n"
            "    return -F.logsigmoid(beta * (policy_chosen_logps - policy_rejected_logps))\n")


class SleepySlot:
    """Test double of a worker: 'runs' a request by sleeping `code` seconds, records who ran it."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def run(self, request: EvaluationRequest):
        if request.code == "boom":
            raise RuntimeError("worker lost")
        time.sleep(float(request.code))
        self.log.append((self.name, request.code))
        return (self.name, request.code)

    def close(self) -> None:
        self.log.append((self.name, "closed"))


def test_slot_executor_balances_orders_and_propagates_errors():
    log: list = []
    with SlotExecutor([SleepySlot("a", log), SleepySlot("b", log)]) as ex:
        # one slow request must not hold up the short ones: the idle slot takes them (judged by the
        # order in which the slots finished, not by wall time, which a shared machine cannot promise)
        results = list(ex.map([EvaluationRequest.probe(c) for c in ("1.5", "0.01", "0.01", "0.01")]))
        assert [r[1] for r in results] == ["1.5", "0.01", "0.01", "0.01"]  # map keeps request order
        slow_slot = results[0][0]
        assert all(r[0] != slow_slot for r in results[1:])
        finished = [code for _, code in log]
        assert finished.index("1.5") == len(finished) - 1  # the three short ones finished first
        with pytest.raises(RuntimeError, match="worker lost"):
            ex.submit(EvaluationRequest.probe("boom")).result()
        assert ex.submit(EvaluationRequest.probe("0")).result()[1] == "0"  # still serving
    assert sorted(x for x in log if x[1] == "closed") == [("a", "closed"), ("b", "closed")]


def test_unknown_executor_is_a_user_error():
    with pytest.raises(UserError, match="local"):
        make_executor("slurm")


def test_local_executor_runs_the_sandbox_pool_surface():
    with make_executor("local", num_workers=1) as ex:
        assert ex.probe(DPO_LIKE).ok
        unsafe = ex.probe("import os\n" + DPO_LIKE)  # rejected by static validation, never run
        assert not unsafe.ok and unsafe.failure_class == "unsafe"
        assert ex.num_workers == 1 and len(ex.workers) == 1


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray cluster for the module (start-up takes 10-20 s on 2 busy cores)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_campaign_gives_the_same_archive_as_local(local_ray, tmp_path):
    run_tiny_campaign(tmp_path / "local")  # executor: local (the default)
    run_tiny_campaign(tmp_path / "ray", executor="ray")  # only the executor line differs
    local, remote = archive(tmp_path / "local"), archive(tmp_path / "ray")
    assert local == remote
    assert sum(r[8] == "evaluated" for r in local) >= 4  # real evaluations happened (3 baselines + children)
    assert "executor: ray" in (tmp_path / "ray" / "config.resolved.yaml").read_text()  # resumes on Ray too


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ray_workers_are_sandboxed_and_replaced_when_lost(local_ray):
    with make_executor("ray", num_workers=2) as ex:
        hosts = ex.placement
        assert len(hosts) == 2 and len({h["pid"] for h in hosts}) == 2  # two actors, own sandbox pools
        assert ex.probe(DPO_LIKE).ok
        # candidate code is still validated and sandboxed on the Ray side
        assert ex.probe("import os\n" + DPO_LIKE).failure_class == "unsafe"
        # a lost actor (dead node) is replaced and the request retried, not failed
        slot = ex.slots[0]
        local_ray.kill(slot.actor)
        assert slot.run(EvaluationRequest.probe(DPO_LIKE)).ok


def test_campaign_config_names_its_executor():
    from discovery.config import config_from_dict

    cfg = config_from_dict({"executor": "ray", "ray_address": "auto", "num_gpus_per_worker": 1})
    assert (cfg.executor, cfg.ray_address, cfg.num_gpus_per_worker) == ("ray", "auto", 1.0)
    assert config_from_dict({}).executor == "local"
    with pytest.raises(UserError, match="executor"):
        config_from_dict({"executor": "slurm"})
