"""Load test of the annotation server: N concurrent simulated annotators over loopback.

Starts `prefdisco annotate serve` as a subprocess on a fresh SQLite project, lets N annotators
(asyncio clients) fetch and answer items as fast as the server allows for a bounded time, then
checks the database against every acknowledged submission: zero lost, zero duplicated.

    .venv/bin/python benchmarks/annotation_load.py --annotators 20 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from preference_data.annotation.demo import build_demo_project, random_answers, start_serve_process  # noqa: E402
from preference_data.annotation.store import export_judgments  # noqa: E402


async def annotator(base: str, token: str, seed: int, deadline: float, think_s: float,
                    acked: list[tuple[float, list[str]]], refused: Counter) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        while time.monotonic() < deadline:
            item = (await c.get(f"/api/a/{token}/next")).json()["item"]
            if item is None:
                return
            if think_s:
                await asyncio.sleep(rng.uniform(0, 2 * think_s))
            r = await c.post(f"/api/a/{token}/items/{item['item_id']}",
                             json={"answers": random_answers(item, rng), "comment": "load"})
            if r.status_code == 200:
                acked.append((time.monotonic(), r.json()["judgment_ids"]))
            else:
                refused[r.status_code] += 1


async def drive(base: str, tokens: list[str], seconds: float, think_s: float):
    acked: list[tuple[float, list[str]]] = []
    refused: Counter = Counter()
    start = time.monotonic()
    await asyncio.gather(*(annotator(base, t, i, start + seconds, think_s, acked, refused)
                           for i, t in enumerate(tokens)))
    return start, time.monotonic(), acked, refused


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--annotators", type=int, default=20)
    ap.add_argument("--items", type=int, default=400)
    ap.add_argument("--overlap", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0, help="bound on the load phase")
    ap.add_argument("--think-ms", type=float, default=0.0, help="mean pause before each answer")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="prefdisco-annotation-load-"))
    url = f"sqlite:///{work}/load.db"
    demo = build_demo_project(url, work, n_items=args.items, n_annotators=args.annotators,
                              spec_overrides={"overlap": args.overlap}, n_responses=3)
    proc, base = start_serve_process(url, "demo", timeout_s=30)
    try:
        start, end, acked, refused = asyncio.run(drive(base, demo.annotator_tokens, args.seconds,
                                                       args.think_ms / 1000))
    finally:
        proc.terminate()
        proc.wait(10)

    acked_ids = [j for _, ids in acked for j in ids]
    rows = export_judgments(url, "demo")
    stored_ids = [r["judgment_id"] for r in rows]
    lost = len(set(acked_ids) - set(stored_ids))
    unacked_extra = len(set(stored_ids) - set(acked_ids))
    dup_ids = len(stored_ids) - len(set(stored_ids))
    dup_work = sum(n - 1 for n in Counter((r["annotator_id"], r["item_id"], r["dimension"])
                                          for r in rows).values() if n > 1)
    over_k = sum(1 for n in Counter(r["item_id"] for r in rows if r["dimension"] == "helpfulness")
                 .values() if n > args.overlap)
    elapsed = (acked[-1][0] - start) if acked else end - start
    result = {
        "annotators": args.annotators, "items": args.items, "overlap": args.overlap,
        "elapsed_s": round(elapsed, 2), "submissions": len(acked), "judgments": len(acked_ids),
        "judgments_per_s": round(len(acked_ids) / elapsed, 1),
        "submissions_per_s": round(len(acked) / elapsed, 1),
        "refused": dict(refused), "lost": lost, "stored_not_acknowledged": unacked_extra,
        "duplicate_ids": dup_ids, "duplicate_judgments": dup_work, "items_over_k": over_k,
        "load_average_1m": round(os.getloadavg()[0], 2),  # shared cores: read the rate with this
    }
    ok = lost == unacked_extra == dup_ids == dup_work == over_k == 0 and not refused
    result["ok"] = ok
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.annotators} concurrent annotators, {result['submissions']} submissions "
              f"({result['judgments']} judgments) in {result['elapsed_s']} s")
        print(f"sustained: {result['judgments_per_s']} judgments/s "
              f"({result['submissions_per_s']} submissions/s, 4 dimensions each; "
              f"load average {result['load_average_1m']})")
        print(f"lost={lost} duplicated={dup_ids + dup_work} stored-but-unacknowledged={unacked_extra} "
              f"items-over-k={over_k} refused={dict(refused)} -> {'OK' if ok else 'FAILED'}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
