"""Browser regressions for two ways an annotator's answers were corrupted or lost (Chromium).

They touch only controls both the old and the new item page have (choice and rating radios, the
`rank-<dimension>-<position>` inputs, the text boxes), so on the old page they fail for the
reason their docstrings name."""

from __future__ import annotations

from pathlib import Path

import pytest

from preference_data.annotation.app import create_app
from preference_data.annotation.demo import LoopbackServer, build_demo_project
from preference_data.annotation.store import export_judgments

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RANK_BY_SCRIPT = """
for (var p = 1; p <= 3; p++) { document.getElementById('rank-overall-' + p).value = String(p); }
var list = document.getElementById('rank-list-overall'); if (list) { list.dataset.ranked = '1'; }
"""


def _open_item(browser, srv, demo):  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    browser.get(f"{srv.url}/a/{demo.annotator_tokens[0]}/item")
    WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.ID, "judgment-form"))


@pytest.mark.timeout(180)
def test_digit_typed_on_a_rating_does_not_change_the_chosen_response(tmp_path: Path, browser) -> None:
    """Before: with the choice answered, typing a digit while a Likert radio (or rank control) had
    focus re-targeted the 1-9 shortcut at the last choice question and silently changed it."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=1, n_responses=3)
    with LoopbackServer(create_app(url, "demo")) as srv:
        _open_item(browser, srv, demo)
        browser.find_element(By.TAG_NAME, "body").send_keys("2")
        assert browser.find_element(By.ID, "pairwise-helpfulness-2").is_selected()
        rating = browser.find_element(By.ID, "likert-politeness-1-4")
        rating.click()
        rating.send_keys("1")
        browser.execute_script(  # focus the first rank control: an arrow button, or the old <select>
            "var b = document.querySelector('#rank-item-overall-1 button');"
            "(b || document.getElementById('rank-overall-1')).focus();")
        ActionChains(browser).send_keys("3").perform()
        browser.save_screenshot(str(tmp_path / "digits.png"))
        assert browser.find_element(By.ID, "pairwise-helpfulness-2").is_selected()
        assert not browser.find_element(By.ID, "pairwise-helpfulness-1").is_selected()
        assert not browser.find_element(By.ID, "pairwise-helpfulness-3").is_selected()


@pytest.mark.timeout(180)
def test_validation_error_keeps_the_answers_on_the_page(tmp_path: Path, browser) -> None:
    """Before: a 10,001-character reason gave a bare error page, and Back showed an empty form."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    url = f"sqlite:///{tmp_path}/a.db"
    demo = build_demo_project(url, tmp_path, n_items=1, n_annotators=1, n_responses=3)
    with LoopbackServer(create_app(url, "demo")) as srv:
        _open_item(browser, srv, demo)
        find = browser.find_element
        find(By.ID, "pairwise-helpfulness-3").click()
        for p in (1, 2, 3):
            find(By.ID, f"likert-politeness-{p}-{p + 1}").click()
        browser.execute_script(RANK_BY_SCRIPT)
        find(By.ID, "comment").send_keys("my careful comment")
        browser.execute_script("document.getElementById('text-reason').value = 'y'.repeat(10001)")
        find(By.ID, "submit").click()
        WebDriverWait(browser, 20).until(lambda d: "10000" in d.find_element(By.TAG_NAME, "body").text)
        browser.save_screenshot(str(tmp_path / "validation_error.png"))
        # the answer to the error is the same form, answers in place (not an error page to go back from)
        assert browser.find_elements(By.ID, "judgment-form"), "a bare error page"
        assert find(By.ID, "pairwise-helpfulness-3").is_selected()
        assert all(find(By.ID, f"likert-politeness-{p}-{p + 1}").is_selected() for p in (1, 2, 3))
        assert find(By.ID, "comment").get_attribute("value") == "my careful comment"
        assert len(find(By.ID, "text-reason").get_attribute("value")) == 10_001
        assert find(By.ID, "text-reason").get_attribute("maxlength") == "10000"
    assert export_judgments(url, "demo") == []
