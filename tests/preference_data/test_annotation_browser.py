"""A real annotation session in headless Chromium (Debian chromium + chromium-driver, selenium)."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from sqlalchemy import select

from preference_data.annotation.app import create_app
from preference_data.annotation.db import session_factory
from preference_data.annotation.models import Assignment
from preference_data.annotation.demo import LoopbackServer, build_demo_project
from preference_data.annotation.store import export_judgments, read_judgments

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                 reason="needs Debian `chromium` and `chromium-driver` "
                                        "(run scripts/services as root)")]




@pytest.mark.timeout(180)
def test_annotator_session_in_chromium(tmp_path: Path, browser) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=4, n_annotators=1, n_responses=3, consent=False,
                              attributes=[{}])
    shots = tmp_path / "screenshots"
    shots.mkdir()
    # pages replace each other under the waits; a stale element just means "look again"
    wait = WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,))
    expected_pairwise: dict[str, str] = {}
    with LoopbackServer(create_app(url, "demo")) as srv:
        browser.get(f"{srv.url}/a/{demo.annotator_tokens[0]}")
        assert "Pick the answer you would rather get." in browser.find_element(By.ID, "guidelines").text
        Select(browser.find_element(By.ID, "attr-region")).select_by_visible_text("south")
        Select(browser.find_element(By.ID, "attr-age_band")).select_by_visible_text("50+")
        browser.find_element(By.ID, "consent").click()
        browser.find_element(By.ID, "start").click()
        for n in range(3):
            wait.until(lambda d: d.find_elements(By.ID, "judgment-form"))
            item_id = browser.find_element(By.ID, "judgment-form").get_attribute("action").rsplit("/", 1)[1]
            # keyboard shortcut: "2" picks the response shown second for the pairwise question
            browser.find_element(By.TAG_NAME, "body").send_keys("2")
            assert browser.find_element(By.ID, "pairwise-helpfulness-2").is_selected()
            expected_pairwise[item_id] = browser.find_element(By.ID, "response-2").get_attribute(
                "data-response-id")
            for pos in (1, 2, 3):
                browser.find_element(By.ID, f"likert-politeness-{pos}-{pos + 1}").click()
            # keyboard-accessible ranking: move the third response to the top, then the second up
            for button in ("rank-up-overall-3", "rank-up-overall-3", "rank-up-overall-2"):
                browser.find_element(By.ID, button).click()
            browser.find_element(By.ID, "text-reason").send_keys(f"clearer, item {n}")
            browser.find_element(By.ID, "comment").send_keys("browser test")
            if n == 0:
                shot = shots / "annotation_page.png"
                browser.execute_script("window.scrollTo(0, 0)")
                browser.save_screenshot(str(shot))
                print(f"screenshot: {shot}")
                browser.find_element(By.ID, "comment").send_keys(Keys.CONTROL, Keys.ENTER)  # shortcut
            else:
                browser.find_element(By.ID, "submit").click()
            wait.until(lambda d: d.find_elements(By.ID, "done") or any(
                item_id not in (f.get_attribute("action") or "") for f in d.find_elements(By.ID, "judgment-form")))
        # the fourth item: skip it with the Alt+S shortcut
        skipped_id = browser.find_element(By.ID, "judgment-form").get_attribute("action").rsplit("/", 1)[1]
        browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ALT, "s")
        wait.until(lambda d: d.find_elements(By.ID, "done"))
        assert "You answered 3 items" in browser.find_element(By.ID, "done").text
        browser.get(f"{srv.url}/admin/{demo.admin_token}")
        browser.save_screenshot(str(shots / "admin_page.png"))
        overview = browser.find_element(By.ID, "overview").text
        assert "0 of 4 items" in overview and "3 submissions" in overview
        export = tmp_path / "export.jsonl"
        export.write_bytes(httpx.get(f"{srv.url}/admin/{demo.admin_token}/export.jsonl").content)

    rows = export_judgments(url, "demo")
    assert skipped_id not in {r["item_id"] for r in rows}
    with session_factory(url)() as s:
        assert s.scalar(select(Assignment.status).where(Assignment.item_id == skipped_id)) == "skipped"
    assert len(rows) == 3 * 4 and read_judgments(export) == rows
    for row in rows:
        assert row["annotator_attributes"] == {"region": "south", "age_band": "50+"}
        assert row["comment"] == "browser test" and row["time_spent_s"] > 0
        order = row["display_order"]
        if row["dimension"] == "helpfulness":
            assert row["value"] == expected_pairwise[row["item_id"]] == order[1]
        elif row["dimension"] == "politeness":
            assert row["value"] == {order[0]: 2, order[1]: 3, order[2]: 4}
        elif row["dimension"] == "overall":
            assert row["value"] == [order[2], order[1], order[0]]
        else:
            assert row["value"].startswith("clearer, item")
