"""Regenerate the shipped transcript, tests/discovery/recorded/conversation/: a small conversation-mode
LLM campaign recorded against the HTTP test double (not a model: `prompt_hash_reply` answers) and
evaluated on the FakePool, with its archive as `archive.json`. Run it after changing the prompts:

    PYTHONPATH=. python tests/discovery/record_transcript.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from llm_campaign import archive_dump, prompt_hash_reply, run_llm_campaign
from openai_test_server import ScriptedOpenAIServer

TARGET = HERE / "recorded" / "conversation"
SETTINGS = {"name": "recorded-conversation", "budget": {"max_candidates": 6}, "pipeline_lag": 1,
            "cascade": {"fitness_suite": "fitness", "heldout_top_k": 1, "screen_margin": 0.3},
            "llm": {"mode": "conversation", "record": True, "concurrency": 2, "prompt": {"show_beta": True}}}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, ScriptedOpenAIServer(default=prompt_hash_reply) as server:
        out = Path(tmp) / "campaign"
        run_llm_campaign(out, server.base_url, **json.loads(json.dumps(SETTINGS)))
        TARGET.mkdir(parents=True, exist_ok=True)
        for name in ("config.resolved.yaml", "transcript.jsonl"):
            shutil.copy(out / name, TARGET / name)
        (TARGET / "archive.json").write_text(json.dumps(archive_dump(out), indent=1, sort_keys=True) + "\n")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
