"""A small synthetic project plus a loopback server, shared by the tests and the load benchmark.

The items are plain generated text (no model involved); `random_answers` produces valid answers
for any item so simulated annotators exercise every scale.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preference_data.annotation.spec import ProjectSpec, spec_from_dict
from preference_data.annotation.store import add_annotators, create_project, import_items

DEMO_SPEC: dict[str, Any] = {
    "name": "demo", "title": "Demo project", "guidelines": "Pick the answer you would rather get.",
    "overlap": 3,
    "dimensions": [
        {"name": "helpfulness", "description": "Which is more helpful?", "scale": "pairwise"},
        {"name": "politeness", "description": "How polite is each?", "scale": "likert", "min": 1, "max": 5},
        {"name": "overall", "description": "Rank all answers.", "scale": "ranking"},
        {"name": "reason", "description": "Why?", "scale": "text", "required": False},
    ],
    "attributes": [{"name": "region", "values": ["north", "south"]},
                   {"name": "age_band", "values": ["18-29", "30-49", "50+"]}],
    "population_shares": {"region": {"north": 0.5, "south": 0.5}},
}


@dataclass
class DemoProject:
    db_url: str
    name: str
    admin_token: str
    annotator_tokens: list[str] = field(default_factory=list)
    annotator_ids: list[str] = field(default_factory=list)


def write_demo_items(path: Path, n_items: int, n_responses: int = 2, seed: int = 0) -> Path:
    import json
    rng = random.Random(seed)
    with path.open("w") as f:
        for i in range(n_items):
            k = n_responses if n_responses > 0 else rng.choice([2, 3])
            f.write(json.dumps({"prompt": f"Prompt {i}: say something about topic {i}.", "responses": [
                {"text": f"Answer {j} to prompt {i}.", "model": f"model-{j}",
                 "settings": {"temperature": 0.7, "seed": i}} for j in range(k)]}) + "\n")
    return path


def build_demo_project(db_url: str, workdir: Path, n_items: int = 6, n_annotators: int = 2,
                       spec_overrides: dict[str, Any] | None = None, n_responses: int = 2,
                       attributes: list[dict[str, str]] | None = None, consent: bool = True) -> DemoProject:
    """Create the demo project with items and annotators (consent pre-recorded unless told not)."""
    from sqlalchemy import update

    from preference_data.annotation.db import session_factory
    from preference_data.annotation.models import Annotator

    spec: ProjectSpec = spec_from_dict({**DEMO_SPEC, **(spec_overrides or {})})
    admin = create_project(db_url, spec)
    import_items(db_url, spec.name, write_demo_items(workdir / f"{spec.name}_items.jsonl", n_items,
                                                     n_responses))
    demo = DemoProject(db_url, spec.name, admin)
    for i in range(n_annotators):
        attrs = (attributes[i % len(attributes)] if attributes
                 else {"region": ["north", "south"][i % 2]})
        (made,) = add_annotators(db_url, spec.name, 1, attrs)
        demo.annotator_tokens.append(made.token)
        demo.annotator_ids.append(made.annotator_id)
    if consent:
        with session_factory(db_url)() as s, s.begin():
            s.execute(update(Annotator).where(Annotator.id.in_(demo.annotator_ids)).values(consent=True))
    return demo


def random_answers(item: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Valid answers for every dimension of an item as served by GET /api/a/<token>/next."""
    rids = [r["response_id"] for r in item["responses"]]
    out: dict[str, Any] = {}
    for d in item["dimensions"]:
        if d["scale"] == "pairwise":
            out[d["name"]] = rng.choice(rids)
        elif d["scale"] == "ranking":
            out[d["name"]] = rng.sample(rids, len(rids))
        elif d["scale"] == "likert":
            out[d["name"]] = {rid: rng.randint(d["min"], d["max"]) for rid in rids}
        else:
            out[d["name"]] = f"reason {rng.randint(0, 999)}"
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackServer:
    """uvicorn serving an app on 127.0.0.1:<free port> in a daemon thread (context manager)."""

    def __init__(self, app: Any, port: int | None = None):
        import uvicorn
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("annotation server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_serve_process(db_url: str, project: str, *, stderr: Any = None,
                        timeout_s: float = 60.0) -> tuple[Any, str]:
    """`prefdisco annotate serve` in a child process (so it can be SIGKILLed), once it answers.

    Returns (Popen, base URL). ``stderr`` is passed to Popen (default: discarded); when the server
    exits before answering, the error names its stderr when that was piped.
    """
    import subprocess
    import sys

    import httpx

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "discovery.commands", "annotate", "serve", "--project", project,
                             "--db", db_url, "--port", str(port)], cwd=Path(__file__).resolve().parents[2],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL if stderr is None else stderr)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(base, timeout=1)
            return proc, base
        except httpx.TransportError:
            if proc.poll() is not None:
                detail = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"annotation server exited with {proc.returncode}: {detail[-2000:]}") from None
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("annotation server did not start") from None
            time.sleep(0.1)
