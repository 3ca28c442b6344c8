"""LLM latency vs evaluation: are the sandbox workers kept busy when every reply takes seconds?

    python benchmarks/llm_latency.py                       # 2 s replies, 4 in flight vs 1, 32 candidates
    python benchmarks/llm_latency.py --latency 5 --concurrency 8 --generation-size 8 --max-candidates 32

Runs a real LLM campaign (LLMProposer, `openai` client over HTTP, real sandbox, real training on the
tests' tiny bandit suites, each run raised to `--train-steps` 400) against the OpenAI-compatible
*test double* (tests/discovery/openai_test_server.py), which holds every reply back `--latency`
seconds; its replies are a pure function of the prompt (tests/discovery/llm_campaign.py), not a model.
Each stage call the cascade makes is timed; "busy" = summed call time / (workers x wall time), the
share of the workers' capacity spent evaluating. It is given over the whole `Campaign.run()` (which
opens with the sandbox workers' start) and from the first stage call to the last (what the LLM's
latency can cost); both runs start after the main process's imports (torch). The first LLM round
always waits for the baselines' fitness, so a longer campaign amortises it. On a shared machine the
ratio of the two runs side by side is the robust figure. Target: busy >= 90 % with the requests in
flight. LLM_LATENCY_TIMELINE=1 prints the stretches when a worker stood idle.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "discovery"))


class BusyMeter:
    """The executor, seen through the two calls the cascade makes, with every call's duration kept."""

    def __init__(self, pool: Any):
        self.pool = pool
        self.busy_s = 0.0
        self.calls = 0
        self.intervals: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def _timed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            end = time.perf_counter()
            with self._lock:
                self.busy_s += end - start
                self.calls += 1
                self.intervals.append((start, end))

    def probe(self, code: str) -> Any:
        return self._timed(self.pool.probe, code)

    def run_job(self, code: str | None, job: str, kwargs: dict, timeout_s: float | None = None) -> Any:
        return self._timed(lambda: self.pool.submit_job(code, job, kwargs, timeout_s=timeout_s).result())

    def close(self) -> None:
        self.pool.close()


def print_timeline(intervals: list[tuple[float, float]], t0: float, workers: int) -> None:
    """Debug aid: the stretches during which fewer than `workers` stage calls were running."""
    events = sorted([(a - t0, 1) for a, _ in intervals] + [(b - t0, -1) for _, b in intervals])
    running, last = 0, 0.0
    for t, d in events:
        if running < workers and t - last > 0.05:
            print(f"  {last:7.2f}-{t:7.2f}s: {running} of {workers} busy", file=sys.stderr)
        running, last = running + d, t


def write_suites(where: Path, steps: int) -> Path:
    """The tests' tiny bandit suites with `steps` training steps per run (the evaluation cost knob)."""
    import yaml

    where.mkdir(parents=True, exist_ok=True)
    for name in ("tiny_screen", "tiny_fitness", "tiny_heldout"):
        suite = yaml.safe_load((ROOT / "tests" / "discovery" / "suites" / f"{name}.yaml").read_text())
        for group in suite["groups"]:
            group["train"]["steps"] = steps
        (where / f"{name}.yaml").write_text(yaml.safe_dump(suite))
    return where


def run_once(args: argparse.Namespace, concurrency: int, out: Path) -> dict[str, Any]:
    from llm_campaign import prompt_hash_reply
    from openai_test_server import ScriptedOpenAIServer

    from discovery.config import config_from_dict
    from discovery.executors import make_executor
    from discovery.sandbox import SandboxLimits
    from discovery.search.campaign import Campaign
    from discovery.search.progress import ProgressView
    from evaluators.paths import default_cache_dir

    suites = write_suites(out.parent / f"suites-c{concurrency}", args.train_steps)
    islands = max(2, args.generation_size) if args.mode == "conversation" else 2
    config = config_from_dict({
        "name": f"llm-latency-c{concurrency}", "seed": args.seed, "baselines": ["dpo", "ipo", "hinge", "lrml"],
        "generation_size": args.generation_size, "pipeline_lag": args.lag, "workers": args.workers,
        "database": {"islands": islands},
        "proposer": {"kind": "llm", "inspirations": 1, "llm": {
            "mode": args.mode, "concurrency": concurrency, "max_tokens": 600,
            "models": [{"model": "scripted-test-double", "base_url": "http://127.0.0.1:9/v1",
                        "api_key_env": "PREFDISCO_TEST_KEY"}]}},
        "budget": {"max_candidates": args.max_candidates},
        "cascade": {"screen_suite": str(suites / "tiny_screen.yaml"), "fitness_suite": str(suites / "tiny_fitness.yaml"),
                    "heldout_suite": str(suites / "tiny_heldout.yaml"), "heldout_top_k": 2, "screen_margin": 1.0,
                    "job_timeout_s": 300}})
    executor = make_executor("local", num_workers=args.workers,
                             limits=SandboxLimits(cache_dir=str(default_cache_dir())))
    meter = BusyMeter(executor)
    try:
        with ScriptedOpenAIServer(default=prompt_hash_reply, latency_s=args.latency) as server:
            config.proposer.llm.models[0].base_url = server.base_url
            load_before = os.getloadavg()
            campaign = Campaign.create(config, out, pool=meter, progress=ProgressView(enabled=False))
            start = time.perf_counter()
            result = campaign.run()
            wall = time.perf_counter() - start
            if os.environ.get("LLM_LATENCY_TIMELINE"):
                print_timeline(meter.intervals, start, args.workers)
            first, last = min(a for a, _ in meter.intervals), max(b for _, b in meter.intervals)
            load_after = os.getloadavg()
    finally:
        meter.close()
    return {"concurrency": concurrency, "wall_s": round(wall, 1), "busy": round(meter.busy_s / (args.workers * wall), 3),
            "evaluating_s": round(last - first, 1), "cold_start_s": round(first - start, 1),
            "busy_from_first_evaluation": round(meter.busy_s / (args.workers * (last - first)), 3),
            "stage_calls": meter.calls, "llm_requests": len(server.requests), "max_in_flight": server.max_in_flight,
            "candidates": result.candidates, "evaluated": result.evaluated,
            "load_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)]}


def warm_up() -> None:
    """Pay the main process's one-time imports (torch, via static validation) before either run."""
    from candidate_losses import get_loss
    from discovery.sandbox import validate_source
    from discovery.search.campaign import baseline_code

    validate_source(baseline_code(get_loss("dpo").source))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=2.0, help="seconds the test double holds each reply")
    parser.add_argument("--concurrency", type=int, default=4, help="LLM requests in flight (compared with 1)")
    parser.add_argument("--generation-size", type=int, default=4)
    parser.add_argument("--lag", type=int, default=1, help="pipeline_lag: generations evaluation may trail")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-candidates", type=int, default=32)
    parser.add_argument("--mode", choices=["islands", "conversation"], default="islands")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-steps", type=int, default=400,
                        help="training steps of each bandit run: sets what one evaluation costs")
    parser.add_argument("--no-compare", action="store_true", help="skip the concurrency-1 run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warm_up()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for concurrency in ([args.concurrency] if args.no_compare else [args.concurrency, 1]):
            runs.append(run_once(args, concurrency, Path(tmp) / f"c{concurrency}"))
            if not args.json:
                r = runs[-1]
                print(f"concurrency {r['concurrency']}: workers busy {100 * r['busy_from_first_evaluation']:.1f}% "
                      f"from the first evaluation on ({r['evaluating_s']}s), {100 * r['busy']:.1f}% of the whole "
                      f"{r['wall_s']}s run (cold start {r['cold_start_s']}s; {r['stage_calls']} stage calls, {r['llm_requests']} LLM requests, at most "
                      f"{r['max_in_flight']} in flight, {r['evaluated']}/{r['candidates']} candidates evaluated; "
                      f"load {r['load_1min_before_after'][0]} -> {r['load_1min_before_after'][1]} on "
                      f"{os.cpu_count()} CPUs)", flush=True)
    summary = {"latency_s": args.latency, "workers": args.workers, "generation_size": args.generation_size,
               "pipeline_lag": args.lag, "mode": args.mode, "runs": runs, "target_busy": 0.9}
    if args.json:
        print(json.dumps(summary, indent=2))
    elif len(runs) == 2:
        busy = [r["busy_from_first_evaluation"] for r in runs]
        print(f"busy from the first evaluation on, {args.concurrency} in flight / 1 in flight: {busy[0] / busy[1]:.2f}x "
              f"(target >= 90% with {args.concurrency} in flight: {'met' if busy[0] >= 0.9 else 'NOT met'})")


if __name__ == "__main__":
    main()
