"""Regression tests for defects found by trying the annotation app as an owner, annotator and
attacker. Each test drives only interfaces that existed before the fix (HTTP routes, the CLI, the
export), so on the old code it fails for the reason named in its docstring."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from discovery.commands import app as cli
from discovery.errors import UserError
from preference_data.annotation.app import create_app
from preference_data.annotation.demo import build_demo_project, free_port, random_answers
from preference_data.annotation.store import export_judgments

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _client(url: str) -> TestClient:
    return TestClient(create_app(url, "demo"), follow_redirects=False)


def _answer_next(client: TestClient, token: str, seed: int = 0) -> str:
    item = client.get(f"/api/a/{token}/next").json()["item"]
    r = client.post(f"/api/a/{token}/items/{item['item_id']}",
                    json={"answers": random_answers(item, random.Random(seed))})
    assert r.status_code == 200, r.text
    return item["item_id"]


# ---------------------------------------------------------------- demographics per judgment
def test_start_never_overwrites_preset_attributes_nor_relabels_past_judgments(tmp_path: Path) -> None:
    """Before: POST /start with attr.region=... overwrote the researcher's preset region and
    relabelled every past judgment of that annotator in the export."""
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=3, n_annotators=1, attributes=[{"region": "north"}])
    client, token = _client(url), demo.annotator_tokens[0]
    _answer_next(client, token)
    r = client.post(f"/a/{token}/start", data={"consent": "yes", "attr.region": "south"})
    assert r.status_code == 303
    _answer_next(client, token, 1)
    rows = export_judgments(url, "demo")
    assert len(rows) == 8 and {r["annotator_attributes"]["region"] for r in rows} == {"north"}


def test_self_reported_attribute_edit_does_not_relabel_past_judgments(tmp_path: Path) -> None:
    """Before: judgments carried the annotator's *current* attributes, so a later edit relabelled
    the past. A judgment keeps the attributes its annotator had when judging."""
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=3, n_annotators=1, attributes=[{}], consent=False)
    client, token = _client(url), demo.annotator_tokens[0]
    client.post(f"/a/{token}/start", data={"consent": "yes", "attr.age_band": "18-29"})
    first = _answer_next(client, token)
    client.post(f"/a/{token}/start", data={"consent": "yes", "attr.age_band": "50+"})
    second = _answer_next(client, token, 1)
    bands = {r["item_id"]: r["annotator_attributes"].get("age_band") for r in export_judgments(url, "demo")}
    assert bands[first] == "18-29" and bands[second] == "50+"


def test_quota_blocked_annotator_cannot_switch_group_to_take_the_reserved_slot(tmp_path: Path) -> None:
    """Before: an annotator blocked by a quota re-posted /start with the reserved group's value
    and got the slot kept for that group."""
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=2, attributes=[{}], consent=False,
                              spec_overrides={"overlap": 2, "quotas": {"attribute": "region",
                                                                       "per_item": {"south": 1}}})
    client = _client(url)
    a, b = demo.annotator_tokens
    for token in (a, b):
        assert client.post(f"/a/{token}/start", data={"consent": "yes", "attr.region": "north"}).status_code == 303
    assert client.get(f"/api/a/{a}/next").json()["item"] is not None  # takes the unreserved slot
    assert client.get(f"/api/a/{b}/next").json()["item"] is None      # the other slot is south's
    client.post(f"/a/{b}/start", data={"consent": "yes", "attr.region": "south"})
    assert client.get(f"/api/a/{b}/next").json()["item"] is None


# ---------------------------------------------------------------- request bodies
@pytest.mark.parametrize("body", [b"{not json", b"", b"[true]", b"null", b"\"consent\"", b"[" * 100_000])
def test_consent_endpoint_refuses_bad_bodies_without_a_500(tmp_path: Path, body: bytes) -> None:
    """Before: a malformed, empty, `[true]` or deeply nested body gave HTTP 500."""
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=1, consent=False)
    r = _client(url).post(f"/api/a/{demo.annotator_tokens[0]}/consent", content=body,
                          headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500 and "error" in r.json()


def test_deeply_nested_json_is_refused_on_both_api_endpoints(tmp_path: Path) -> None:
    """Before: 100,000-deep nested JSON raised RecursionError inside the parser: HTTP 500."""
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=1)
    client, token = _client(url), demo.annotator_tokens[0]
    item_id = client.get(f"/api/a/{token}/next").json()["item"]["item_id"]
    deep = b'{"answers": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for path in (f"/api/a/{token}/consent", f"/api/a/{token}/items/{item_id}"):
        r = client.post(path, content=deep, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "nested" in r.json()["error"], path


def test_json_bodies_are_capped_in_size(tmp_path: Path) -> None:
    """Before: a 10 MB JSON body was read and parsed."""
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=1)
    client, token = _client(url), demo.annotator_tokens[0]
    item_id = client.get(f"/api/a/{token}/next").json()["item"]["item_id"]
    huge = json.dumps({"answers": {}, "comment": "x" * 10_000_000}).encode()
    r = client.post(f"/api/a/{token}/items/{item_id}", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413

    def chunks():  # no Content-Length: the size could only be learnt by reading it all
        yield b'{"answers": {}, "comment": "'
        yield b"x" * 1_000_000
        yield b'"}'
    for path in (f"/api/a/{token}/items/{item_id}", f"/a/{token}/start"):
        assert client.post(path, content=chunks(), headers={"content-type": "application/json"}).status_code in (411, 413)


def test_security_headers_on_every_response(tmp_path: Path) -> None:
    """Before: no Content-Security-Policy, X-Frame-Options or nosniff header."""
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=1)
    client = _client(url)
    for path in ("/", f"/a/{demo.annotator_tokens[0]}", f"/a/{demo.annotator_tokens[0]}/item",
                 f"/api/a/{demo.annotator_tokens[0]}/next", f"/admin/{demo.admin_token}", "/a/bogus"):
        h = client.get(path).headers
        csp = h.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, path
        assert h.get("x-frame-options") == "DENY" and h.get("x-content-type-options") == "nosniff", path


# ---------------------------------------------------------------- the form keeps answers
def test_form_validation_error_keeps_every_answer_and_names_the_problem(tmp_path: Path) -> None:
    """Before: a non-permutation ranking or a 10,001-character reason gave a bare error page, and
    going back showed an empty form; the text boxes had no maxlength."""
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=1, n_responses=3)
    client, token = _client(url), demo.annotator_tokens[0]
    item = client.get(f"/api/a/{token}/next").json()["item"]
    rids = [r["response_id"] for r in item["responses"]]
    page = client.get(f"/a/{token}/item").text
    assert 'id="text-reason" maxlength="10000"' in page and 'id="comment" maxlength="10000"' in page
    form = {"pairwise.helpfulness": rids[2], "comment": "my careful comment", "text.reason": "because",
            **{f"likert.politeness.{rid}": str(i + 2) for i, rid in enumerate(rids)},
            **{f"rank.overall.{rid}": "1" for rid in rids}}
    r = client.post(f"/a/{token}/item/{item['item_id']}", data=form)
    assert r.status_code == 422 and "not a permutation" in r.text and 'id="judgment-form"' in r.text
    assert re.search(rf'value="{rids[2]}"[^>]*\n?[^>]*checked', r.text)          # pairwise kept
    assert re.search(r'id="likert-politeness-\d-4"[^>]*\n?[^>]*checked', r.text)  # ratings kept
    assert "my careful comment" in r.text and ">because</textarea>" in r.text
    long = {**form, **{f"rank.overall.{rid}": str(i + 1) for i, rid in enumerate(rids)}, "text.reason": "y" * 10_001}
    r = client.post(f"/a/{token}/item/{item['item_id']}", data=long)
    assert r.status_code == 422 and "at most 10000 characters" in r.text and "y" * 10_001 in r.text
    assert export_judgments(url, "demo") == []


# ---------------------------------------------------------------- CLI
def _cli(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(cli, list(args))


def _one_line_user_error(r, fragment: str) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(r.exception, UserError), (r.exception, r.output)
    assert "\n" not in str(r.exception) and fragment in str(r.exception), str(r.exception)


def _project(tmp_path: Path) -> str:
    db = str(tmp_path / "ann.db")
    r = _cli("annotate", "create", "--spec", str(ROOT / "configs/annotation/example_project.yaml"), "--db", db)
    assert r.exit_code == 0, r.output
    return db


def test_cli_bad_spec_value_is_a_one_line_error(tmp_path: Path) -> None:
    """Before: `overlap: three` raised a ValueError traceback."""
    spec = tmp_path / "s.yaml"
    spec.write_text((ROOT / "configs/annotation/example_project.yaml").read_text().replace("overlap: 3", "overlap: three"))
    _one_line_user_error(_cli("annotate", "create", "--spec", str(spec), "--db", str(tmp_path / "a.db")), "overlap")


def test_cli_unwritable_export_and_missing_db_directory_are_one_line_errors(tmp_path: Path) -> None:
    """Before: `export --out /proc/x.jsonl` and `--db /nonexistent/x.db` gave tracebacks."""
    db = _project(tmp_path)
    _one_line_user_error(_cli("annotate", "export", "-p", "example", "--db", db, "--out", "/proc/x.jsonl"),
                         "/proc/x.jsonl")
    _one_line_user_error(_cli("annotate", "status", "-p", "example", "--db", "/nonexistent/x.db"), "/nonexistent")
    _one_line_user_error(_cli("annotate", "create", "--spec", str(ROOT / "configs/annotation/example_project.yaml"),
                              "--db", "/nonexistent/x.db"), "/nonexistent")


def test_cli_negative_ttl_is_refused(tmp_path: Path) -> None:
    """Before: `--ttl-days -1` created links that were born expired."""
    db = _project(tmp_path)
    _one_line_user_error(_cli("annotate", "add-annotators", "-p", "example", "--db", db, "--ttl-days", "-1"),
                         "--ttl-days must be > 0")


@pytest.mark.parametrize("responses, fragment", [(["same", "same"], "identical responses"),
                                                 (["fine", "  "], "empty response")])
def test_import_refuses_identical_or_empty_responses(tmp_path: Path, responses: list, fragment: str) -> None:
    """Before: items whose responses were identical or empty were imported (and judged)."""
    db = _project(tmp_path)
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"prompt": "p", "responses": responses}) + "\n")
    _one_line_user_error(_cli("annotate", "import", str(items), "-p", "example", "--db", db), fragment)


def test_printed_links_use_the_port_serve_runs_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: links printed by add-annotators always said port 8765, whatever `serve --port`."""
    import uvicorn
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    db = _project(tmp_path)
    r = _cli("annotate", "serve", "-p", "example", "--db", db, "--port", "9137")
    assert r.exit_code == 0 and "http://127.0.0.1:9137/" in r.output, r.output
    r = _cli("annotate", "add-annotators", "-p", "example", "--db", db, "--json")
    assert json.loads(r.stdout)[0]["link"].startswith("http://127.0.0.1:9137/a/")
    r = _cli("annotate", "admin-link", "-p", "example", "--db", db)
    assert r.stdout.startswith("http://127.0.0.1:9137/admin/")


def test_help_shows_the_db_default_and_names_no_missing_file() -> None:
    """Before: the `--db` default vanished from --help (rich read "[default: ...]" as markup) and
    `export --help` pointed to INTERFACES.md, which does not exist."""
    for verb in ("serve", "export", "status", "create"):
        out = _cli("annotate", verb, "--help").output
        assert "annotation.db" in out, verb
    out = _cli("annotate", "export", "--help").output
    for name in re.findall(r"[\w/]+\.md\b", out):
        assert (ROOT / name).exists(), name
    assert "INTERFACES.md" not in out


@pytest.mark.timeout(120)
def test_admin_and_annotator_tokens_never_reach_the_access_log(tmp_path: Path) -> None:
    """Before: `serve --log-level info` wrote GET /admin/<token> into the access log."""
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=1)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "discovery.commands", "annotate", "serve", "-p", "demo", "--db", url,
                                 "--port", str(port), "--log-level", "info"], cwd=ROOT, stdout=sink, stderr=sink)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    httpx.get(base, timeout=1)
                    break
                except httpx.TransportError:
                    import time
                    time.sleep(0.1)
            assert httpx.get(f"{base}/admin/{demo.admin_token}").status_code == 200
            assert httpx.get(f"{base}/a/{demo.annotator_tokens[0]}").status_code == 200
        finally:
            proc.terminate()
            proc.wait(20)
    text = log.read_text()
    assert "GET /admin/<redacted>" in text and "GET /a/<redacted>" in text, text
    assert demo.admin_token not in text and demo.annotator_tokens[0] not in text
