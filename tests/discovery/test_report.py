"""The HTML campaign report: loss-shape diagnostics, SVG charts, rendering, and a real campaign in Chromium."""

from __future__ import annotations

import json
import math
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from discovery.commands import app
from discovery.review.plots import dpo_shape
from discovery.review.report import gather, render_html, shape_regions, write_report
from discovery.review.plots import Chart, nice_ticks

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "report"
Z = [round(-5.0 + 0.125 * i, 6) for i in range(81)]  # the sandbox probe's grid


def sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# ---- shape diagnostics --------------------------------------------------------------------------
def test_dpo_is_convex_with_the_right_sign_everywhere():
    loss, slope = dpo_shape(Z)
    assert loss[40] == pytest.approx(math.log(2.0)) and slope[40] == pytest.approx(-0.5)
    regions = shape_regions(Z, loss, slope)
    assert regions.wrong_sign == [] and regions.non_convex == [] and regions.non_finite == []
    assert regions.describe() == []


def test_sign_flipped_dpo_is_wrong_sign_and_non_convex_everywhere():
    loss, slope = dpo_shape(Z)
    regions = shape_regions(Z, [-x for x in loss], [-g for g in slope])
    assert regions.wrong_sign == [(Z[0], Z[-1])]
    assert regions.non_convex == [(Z[0], Z[-1])]
    assert any("wrong sign" in line for line in regions.describe())


def test_local_regions_are_located():
    # 1 - sigmoid(z): decreasing everywhere, concave exactly for z < 0.
    loss = [1.0 - sigmoid(v) for v in Z]
    slope = [-sigmoid(v) * (1.0 - sigmoid(v)) for v in Z]
    regions = shape_regions(Z, loss, slope)
    assert regions.wrong_sign == []
    (start, end), = regions.non_convex
    assert start == Z[0] and end == pytest.approx(0.0, abs=0.13)
    # a hinge is flat past its margin: zero slope is not a wrong sign, a kink is convex
    hinge = [max(0.0, 1.0 - v) for v in Z]
    assert shape_regions(Z, hinge, [-1.0 if v < 1.0 else 0.0 for v in Z]).describe() == []
    # a loss that rises for z > 2 is flagged there only
    bump = [x + (0.5 * (v - 2.0) ** 2 if v > 2.0 else 0.0) for x, v in zip(dpo_shape(Z)[0], Z)]
    (ws, we), = shape_regions(Z, bump).wrong_sign  # slope by finite differences
    assert 2.0 <= ws <= 2.5 and we == Z[-1]


def test_non_finite_points_are_reported_not_flagged_otherwise():
    loss, slope = dpo_shape(Z)
    loss[:4] = [None] * 4
    regions = shape_regions(Z, loss, slope)
    assert regions.non_finite == [(Z[0], pytest.approx(Z[3] + 0.0625))]
    assert regions.wrong_sign == [] and regions.non_convex == []


# ---- charts -------------------------------------------------------------------------------------
def test_nice_ticks_cover_the_range_with_round_steps():
    ticks = nice_ticks(-0.37, 1.92)
    assert ticks[0] >= -0.37 and ticks[-1] <= 1.92 and 3 <= len(ticks) <= 8
    assert len({round(b - a, 9) for a, b in zip(ticks, ticks[1:])}) == 1


def test_chart_is_valid_svg_with_gaps_and_unique_clip_ids():
    a = Chart("t & <title>", "x", "y")
    a.line([0, 1, 2, 3], [1.0, None, float("nan"), 2.0], label="with gaps")
    a.points([1, 2], [0.5, 0.7], yerr=[0.1, None], label="pts")
    a.vspan(0.5, 1.5, label="bad")
    a.hline(0.6, label="DPO")
    b = Chart("empty", "x", "y")
    svg_a, svg_b = a.svg(), b.svg()
    root = ET.fromstring(svg_a)  # well-formed XML, title escaped
    ET.fromstring(svg_b)
    assert root.tag.endswith("svg") and "t &amp; &lt;title&gt;" in svg_a
    assert re.search(r'clipPath id="(\w+)"', svg_a).group(1) != re.search(r'clipPath id="(\w+)"', svg_b).group(1)


# ---- rendering from a recorded campaign (fake pool: no training) --------------------------------
@pytest.fixture
def fake_campaign(tmp_path: Path) -> Path:
    from conftest import FakePool
    from discovery.search.campaign import Campaign
    from discovery.config import config_from_dict
    from discovery.search.progress import ProgressView
    from discovery.sandbox import validate_source

    cfg = config_from_dict({"name": "fake-report", "seed": 2, "baselines": ["dpo", "hinge"], "generation_size": 3,
                            "budget": {"max_candidates": 6}, "cascade": {"heldout_top_k": 1, "screen_margin": 10.0}})
    out = tmp_path / "campaign"
    Campaign.create(cfg, out, pool=FakePool(), validate=validate_source, progress=ProgressView(enabled=False)).run()
    return out


def test_report_covers_every_candidate_and_stays_offline(fake_campaign: Path):
    from discovery.archive.campaign_dir import CampaignDir

    rows = CampaignDir.open(fake_campaign).database().all()
    report = gather(fake_campaign)
    html = render_html(report)
    for r in rows:
        assert f'id="c-{r.id}"' in html
    evaluated = {r.id for r in rows if r.status == "evaluated"}
    assert {r.id for r in report.leaderboard} == evaluated
    assert report.summary["proposed"] == 6
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from the network
    assert html.count('<img src="data:image/svg+xml;base64,') >= 1 + len(evaluated)
    # the fake probe's shape is a DPO-like three-point curve: no warnings for it
    assert "wrong sign" not in html


def test_cli_writes_report_and_rejects_non_campaigns(fake_campaign: Path, tmp_path: Path):
    runner = CliRunner()
    res = runner.invoke(app, ["report", str(fake_campaign), "--out", str(tmp_path / "r" / "x.html"), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert Path(info["path"]).is_file() and info["candidates"] == 8
    res = runner.invoke(app, ["report", str(fake_campaign), "--out", str(tmp_path / "site")])
    assert res.exit_code == 0 and (tmp_path / "site" / "index.html").is_file()
    res = runner.invoke(app, ["report", str(tmp_path / "r")])
    assert res.exit_code != 0 and "not a campaign directory" in str(res.exception)


# ---- acceptance: a real tiny campaign, opened in headless Chromium ------------------------------
@pytest.fixture(scope="module")
def real_campaign(tmp_path_factory) -> Path:
    """A real campaign: real openai client against the scripted test-double server, real sandbox,
    real tiny evaluation suites (the discovery-loop tests' configuration)."""
    from test_e2e_llm import HOSTILE, good, repair_or_fresh, tiny_config
    from openai_test_server import ScriptedOpenAIServer, json_reply

    from discovery.search.campaign import Campaign
    from discovery.config import config_from_dict
    from discovery.search.progress import ProgressView

    script = [
        json_reply("scaled", good("scaled", "-F.logsigmoid(1.5 * beta * h)")),
        json_reply("broken", "def broken(policy_chosen_logps:\n    return 0\n"),
        json_reply("sneaky", HOSTILE),
        json_reply("backwards", good("backwards", "F.logsigmoid(beta * h)")),  # wrong-sign loss
        "Idea:\n```python\n" + good("mdsmooth", "-F.logsigmoid(beta * h - 0.1)") + "```",
        json_reply("scaled_again", good("scaled_again", "-F.logsigmoid(1.5 * beta * h)")),
    ]
    out = tmp_path_factory.mktemp("report") / "campaign"
    with ScriptedOpenAIServer(script, default=repair_or_fresh) as server:
        Campaign.create(config_from_dict(tiny_config(server.base_url)), out, progress=ProgressView(enabled=False)).run()
    return out




@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(300)
def test_real_campaign_report_in_chromium(real_campaign: Path, browser):
    from selenium.webdriver.common.by import By

    from discovery.archive.campaign_dir import CampaignDir

    rows = CampaignDir.open(real_campaign).database().all()
    evaluated = {r.id for r in rows if r.status == "evaluated"}
    assert {"failed", "duplicate"} <= {r.status for r in rows} and len(evaluated) >= 4
    summary = write_report(real_campaign)
    assert summary.wall_time_s < 20

    browser.get(Path(summary.path).resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    errors = [e for e in browser.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
    assert errors == []
    board = browser.find_elements(By.CSS_SELECTOR, "#leaderboard-table tbody tr")
    assert sorted(tr.find_elements(By.TAG_NAME, "td")[1].text for tr in board) == sorted(evaluated)
    widths = browser.execute_script(
        "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == summary.images and len(widths) >= 1 + 2 * len(evaluated)
    assert all(w > 0 for w in widths), widths
    # the backwards loss is called out in its own section
    section = browser.find_element(By.ID, f"c-{next(r.id for r in rows if r.name == 'backwards')}")
    assert "wrong sign" in section.text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report_top.png"
    browser.save_screenshot(str(shot))
    browser.execute_script("document.getElementById(arguments[0]).scrollIntoView()", section.get_attribute("id"))
    browser.save_screenshot(str(ARTIFACTS / "report_candidate.png"))
    shutil.copy(summary.path, ARTIFACTS / "report.html")
    print(f"report screenshots: {shot} and {ARTIFACTS / 'report_candidate.png'}")
