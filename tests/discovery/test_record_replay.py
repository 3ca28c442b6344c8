"""Record and replay: every prompt, reply and usage goes to transcript.jsonl; a replay asks no endpoint
and reproduces the archive bit for bit (whatever the requests in flight); a killed recorded campaign
resumes without redoing or losing work and still replays; bad input gets one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import FakePool
from llm_campaign import archive_dump, llm_config, prompt_hash_reply, run_llm_campaign
from openai_test_server import ScriptedOpenAIServer, Status

from discovery.archive.campaign_dir import CampaignDir
from discovery.errors import UserError
from discovery.proposers.transcript import read_transcript
from discovery.sandbox import validate_source
from discovery.search.campaign import Campaign
from discovery.search.progress import ProgressView

HERE = Path(__file__).parent
SHIPPED = HERE / "recorded" / "conversation"


def replay(source: Path, out: Path, **llm_overrides) -> object:
    """What `prefdisco run --replay SOURCE --out OUT` does, evaluated on the FakePool."""
    config = CampaignDir.open(source).config()
    config.proposer.llm.record, config.proposer.llm.replay = False, str(source)
    for key, value in llm_overrides.items():
        setattr(config.proposer.llm, key, value)
    return Campaign.create(config, out, pool=FakePool(), validate=validate_source,
                           progress=ProgressView(enabled=False)).run()


@pytest.mark.parametrize("mode", ["islands", "conversation"])
def test_replay_reproduces_the_archive_bit_for_bit_without_an_endpoint(tmp_path, mode):
    script = [Status(500)]  # one request fails for good (max_retries 0): the failure is replayed too
    with ScriptedOpenAIServer(script, default=prompt_hash_reply) as server:
        run_llm_campaign(tmp_path / "rec", server.base_url,
                         llm={"mode": mode, "record": True, "concurrency": 2, "max_retries": 0})
        asked = len(server.requests)
    entries = read_transcript(tmp_path / "rec" / "transcript.jsonl")
    rows = {r.id: r for r in CampaignDir.open(tmp_path / "rec").database().all() if not r.is_baseline}
    assert set(entries) == set(rows) and len(entries) == asked  # one exchange per proposal, keyed by its id
    assert sum(bool(e["error"]) for e in entries.values()) == 1
    for cid, entry in entries.items():
        assert entry["messages"][0]["role"] == "system" and entry["model"] == "scripted-test-double"
        assert entry["prompt_tokens"] + entry["completion_tokens"] == rows[cid].tokens
    # the endpoint is gone (server closed); replay with another number of requests in flight
    replay(tmp_path / "rec", tmp_path / "again", concurrency=3)
    replay(tmp_path / "rec", tmp_path / "sequential", concurrency=1)
    reference = archive_dump(tmp_path / "rec")
    assert archive_dump(tmp_path / "again") == reference
    assert archive_dump(tmp_path / "sequential") == reference


def test_shipped_transcript_replays_to_its_archive():
    """tests/discovery/recorded/conversation was recorded with the test double (see record_transcript.py)."""
    import tempfile

    expected = json.loads((SHIPPED / "archive.json").read_text())
    regenerate = ("the shipped transcript no longer replays (prompts or scoring changed?): if that was meant, "
                  "regenerate it with `PYTHONPATH=. python tests/discovery/record_transcript.py`")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            replay(SHIPPED, Path(tmp) / "replayed")
        except UserError as exc:
            pytest.fail(f"{exc}; {regenerate}")
        assert json.loads(json.dumps(archive_dump(Path(tmp) / "replayed"))) == expected, regenerate


def test_a_diverged_or_short_transcript_stops_the_replay_with_one_line(tmp_path):
    with ScriptedOpenAIServer(default=prompt_hash_reply) as server:
        run_llm_campaign(tmp_path / "rec", server.base_url, llm={"record": True})
    path = tmp_path / "rec" / "transcript.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:4]) + "\n")  # header + 3 exchanges
    with pytest.raises(UserError, match="has no reply for g002-s01") as err:
        replay(tmp_path / "rec", tmp_path / "short")
    assert "\n" not in str(err.value)
    entry = json.loads(lines[2])
    entry["messages"][1]["content"] += " (edited)"
    path.write_text("\n".join([lines[0], lines[1], json.dumps(entry), *lines[3:]]) + "\n")
    with pytest.raises(UserError, match=f"replay diverged at {entry['key']}: message 1 .user."):
        replay(tmp_path / "rec", tmp_path / "diverged")


def cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """`prefdisco run ARGS` through the console entry point: (exit code, stdout, stderr)."""
    from discovery.commands import main

    monkeypatch.setattr(sys, "argv", ["prefdisco", "run", *args])
    with pytest.raises(SystemExit) as done:
        main()
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out, out.err


def test_cli_replay_and_record_refuse_bad_input_with_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    mutation = tmp_path / "mutation.yaml"
    mutation.write_text(yaml.safe_dump({"name": "m"}))
    cases = [
        (["--replay", str(tmp_path / "empty")], "has no transcript.jsonl: record one with"),
        (["--replay", str(SHIPPED), str(mutation)], "give --replay DIR alone"),
        (["--replay", str(SHIPPED), "--seed", "3"], "give --replay DIR alone"),
        ([str(mutation), "--record"], "need proposer.kind: llm"),
        (["--resume", str(SHIPPED), "--record"], "--record starts with a campaign"),
    ]
    for args, needle in cases:
        code, _, err = cli(capsys, monkeypatch, *args)
        assert code == 2 and needle in err, (args, err)
        assert err.count("\n") == 1 and err.startswith("error: ")
    code, printed, _ = cli(capsys, monkeypatch, "--replay", str(SHIPPED), "--print-config")
    assert code == 0
    assert yaml.safe_load(printed)["proposer"]["llm"]["replay"] == str(SHIPPED.resolve())


def run_main(out: Path, base_url: str, *, resume: bool = False, crash: str | None = None, **settings) -> int:
    env = {**os.environ, "PYTHONPATH": str(HERE.parents[1])}
    env.pop("PREFDISCO_CRASH_AT", None)
    if crash:
        env["PREFDISCO_CRASH_AT"] = crash
    cmd = [sys.executable, str(HERE / "llm_campaign.py"), str(out), base_url, "--set", json.dumps(settings)]
    return subprocess.run(cmd + (["--resume"] if resume else []), env=env, capture_output=True, timeout=120).returncode


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["proposal:3", "db_write:9"])
def test_killed_recorded_campaign_resumes_without_redoing_work_and_still_replays(tmp_path, crash):
    settings = {"llm": {"record": True, "concurrency": 2, "mode": "conversation"}}
    with ScriptedOpenAIServer(default=prompt_hash_reply) as server:
        run_llm_campaign(tmp_path / "reference", server.base_url, **settings)
        assert run_main(tmp_path / "cut", server.base_url, crash=crash, **settings) == -9
        recorded_before = {r.id for r in CampaignDir.open(tmp_path / "cut").database().all()}
        assert run_main(tmp_path / "cut", server.base_url, resume=True) == 0
    assert archive_dump(tmp_path / "cut") == archive_dump(tmp_path / "reference")  # nothing lost
    keys = [json.loads(line).get("key") for line in (tmp_path / "cut" / "transcript.jsonl").read_text().splitlines()]
    asked_twice = {k for k in keys if k and keys.count(k) > 1}
    assert not asked_twice & recorded_before  # a proposal the archive held was never asked for again
    replay(tmp_path / "cut", tmp_path / "replayed")
    assert archive_dump(tmp_path / "replayed") == archive_dump(tmp_path / "reference")
    # and a killed replay resumes into the same archive
    assert run_main(tmp_path / "replay-cut", "unused", crash="db_write:12",
                    llm={"replay": str(tmp_path / "cut"), "concurrency": 3, "mode": "conversation"}) == -9
    assert run_main(tmp_path / "replay-cut", "unused", resume=True) == 0
    assert archive_dump(tmp_path / "replay-cut") == archive_dump(tmp_path / "reference")


TIMING_KEYS = ("wall_time_s", "time_s", "seconds", "t_ready", "t_start", "t_done", "cpu_ready", "start_s")


def without_timings(value):
    """A stage result minus the wall-clock measurements inside it (they differ from run to run)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not k.endswith(TIMING_KEYS)}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    if isinstance(value, str) and value.startswith("{"):
        try:
            return without_timings(json.loads(value))
        except json.JSONDecodeError:
            return value
    return value


@pytest.mark.slow
def test_cli_record_then_replay_with_the_real_sandbox_reproduces_the_archive(tmp_path, capsys, monkeypatch):
    suites = HERE / "suites"
    config = llm_config(None, budget={"max_candidates": 4}, llm={"concurrency": 2},
                        cascade={"screen_suite": str(suites / "tiny_screen.yaml"),
                                 "fitness_suite": str(suites / "tiny_fitness.yaml"),
                                 "heldout_suite": str(suites / "tiny_heldout.yaml"), "job_timeout_s": 120,
                                 "screen_margin": 1.0})
    with ScriptedOpenAIServer(default=prompt_hash_reply) as server:
        config["proposer"]["llm"]["models"][0]["base_url"] = server.base_url
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
        code, _, err = cli(capsys, monkeypatch, str(tmp_path / "c.yaml"), "--out", str(tmp_path / "rec"), "--record")
        assert code == 0, err
    assert len(read_transcript(tmp_path / "rec" / "transcript.jsonl")) == len(server.requests) >= 4
    code, _, err = cli(capsys, monkeypatch, "--replay", str(tmp_path / "rec"), "--out", str(tmp_path / "rep"))
    assert code == 0, err  # the endpoint is closed: every reply came from the transcript
    recorded, replayed = archive_dump(tmp_path / "rec"), archive_dump(tmp_path / "rep")
    assert recorded["replies"] == replayed["replies"]
    # codes, statuses, fitness floats, tokens, cost, every stage result: all equal but the stopwatch readings
    assert without_timings(recorded) == without_timings(replayed)
    assert [r["fitness"] for r in recorded["candidates"]] == [r["fitness"] for r in replayed["candidates"]]
    assert any(r["fitness"] is not None for r in recorded["candidates"] if r["origin"] != "baseline")


def test_a_line_torn_by_a_kill_is_dropped_and_recording_continues_on_a_fresh_line(tmp_path):
    from discovery.proposers.chat import ChatReply, ChatRequest
    from discovery.proposers.transcript import RecordingChat

    class Echo:
        def complete(self, request):
            return ChatReply(text=f"reply to {request.key}", prompt_tokens=3, completion_tokens=2)

    path = tmp_path / "transcript.jsonl"
    chat = RecordingChat(Echo(), path, ["m"])
    chat.complete(ChatRequest("g001-s00", 0, [{"role": "user", "content": "a"}]))
    with open(path, "a") as fh:
        fh.write('{"kind": "exchange", "key": "g001-s01", "messa')  # killed mid-write
    assert set(read_transcript(path)) == {"g001-s00"}
    chat = RecordingChat(Echo(), path, ["m"])  # the resumed campaign
    chat.complete(ChatRequest("g001-s01", 0, [{"role": "user", "content": "b"}]))
    entries = read_transcript(path)
    assert set(entries) == {"g001-s00", "g001-s01"} and entries["g001-s01"]["reply"] == "reply to g001-s01"
    assert all(json.loads(line) for line in path.read_text().splitlines())
