"""The annotator and researcher UI in headless Chromium: attention checks, drag-to-rank (and its
keyboard fallback), markdown and code rendering, digit shortcuts that never change an answer,
a validation error that keeps every answer, and the review/adjudication page. Screenshots are
saved under the test's tmp dir."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest

from preference_data.annotation.app import create_app
from preference_data.annotation.demo import LoopbackServer, random_answers
from preference_data.annotation.spec import spec_from_dict
from preference_data.annotation.store import add_annotators, create_project, export_judgments, import_items

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SPEC = {
    "name": "ui", "title": "UI study", "overlap": 2, "quality": {"control_every": 2},
    "dimensions": [{"name": "helpfulness", "scale": "pairwise"},
                   {"name": "politeness", "scale": "likert", "min": 1, "max": 5},
                   {"name": "overall", "scale": "ranking"},
                   {"name": "reason", "scale": "text", "required": False}],
}
CODE = "Use a loop:\n\n```python\nfor i in range(3):\n    print('<b>', i)\n```\n\nIt is **fast**."


def _items(path: Path) -> Path:
    rows = [{"prompt": f"Question {i}: how do I repeat something *three* times?",
             "responses": [CODE + f" ({i})", f"Copy and paste it. ({i})", f"<script>alert({i})</script> just do it"]}
            for i in range(2)]
    rows.append({"prompt": "Attention check: rank and pick the response that says BANANA.", "kind": "attention",
                 "responses": ["apple", "BANANA", "cherry"], "gold": {"helpfulness": 1}})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.timeout(300)
def test_new_ui_features_in_chromium(tmp_path: Path, browser) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url = f"sqlite:///{tmp_path}/a.db"
    admin = create_project(url, spec_from_dict(SPEC))
    import_items(url, "ui", _items(tmp_path / "items.jsonl"))
    (me,), (other,) = add_annotators(url, "ui", 1), add_annotators(url, "ui", 1)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    wait = WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,))
    find = browser.find_element

    def item_id() -> str:
        return find(By.ID, "judgment-form").get_attribute("action").rsplit("/", 1)[1]

    def shown_ids() -> list[str]:
        return [find(By.ID, f"response-{p}").get_attribute("data-response-id") for p in (1, 2, 3)]

    def next_page(previous: str) -> None:
        from selenium.common.exceptions import TimeoutException
        try:
            _next_page(previous)
        except TimeoutException:
            raise AssertionError(find(By.TAG_NAME, "body").text[:2000]) from None

    def _next_page(previous: str) -> None:
        wait.until(lambda d: d.find_elements(By.ID, "done") or any(
            previous not in (f.get_attribute("action") or "") for f in d.find_elements(By.ID, "judgment-form")))

    with LoopbackServer(create_app(url)) as srv:
        browser.get(f"{srv.url}/a/{me.token}")
        find(By.ID, "consent").click()
        find(By.ID, "start").click()
        wait.until(lambda d: d.find_elements(By.ID, "judgment-form"))

        # 1. the attention check comes first; answer it as asked (ranking kept as shown)
        assert "Attention check" in find(By.ID, "prompt").text
        banana = next(p for p in (1, 2, 3) if find(By.ID, f"response-{p}").text.endswith("BANANA"))
        find(By.ID, f"pairwise-helpfulness-{banana}").click()
        for p in (1, 2, 3):
            find(By.ID, f"likert-politeness-{p}-3").click()
        find(By.ID, "rank-keep-overall").click()
        browser.save_screenshot(str(shots / "attention_check.png"))
        check_id = item_id()
        find(By.ID, "submit").click()
        next_page(check_id)

        # 2. a regular item: markdown and code are rendered, raw HTML is shown as text
        first = item_id()
        code_response = next(p for p in (1, 2, 3) if "Use a loop" in find(By.ID, f"response-{p}").text)
        box = find(By.ID, f"response-{code_response}")
        assert box.find_element(By.CSS_SELECTOR, "pre code").text.startswith("for i in range(3):")
        assert box.find_element(By.TAG_NAME, "strong").text == "fast"
        assert any("<script>alert(" in find(By.ID, f"response-{p}").text for p in (1, 2, 3))  # shown as text
        assert not browser.find_elements(By.XPATH, "//div[contains(@class,'response')]//script")
        assert find(By.ID, "text-reason").get_attribute("maxlength") == "10000"

        # 3. digits answer the unanswered choice question once, and never while another control has focus
        find(By.TAG_NAME, "body").send_keys("2")
        assert find(By.ID, "pairwise-helpfulness-2").is_selected()
        find(By.ID, "likert-politeness-1-4").click()            # focus on a rating
        find(By.ID, "likert-politeness-1-4").send_keys("1")
        find(By.ID, "rank-up-overall-2").send_keys("3")          # focus on a rank control
        browser.execute_script("document.activeElement.blur()")
        find(By.TAG_NAME, "body").send_keys("3")                 # nothing unanswered: no change
        assert find(By.ID, "pairwise-helpfulness-2").is_selected()
        assert not find(By.ID, "pairwise-helpfulness-1").is_selected()
        assert not find(By.ID, "pairwise-helpfulness-3").is_selected()
        for p in (2, 3):
            find(By.ID, f"likert-politeness-{p}-{p}").click()

        # 4. drag-to-rank: drag the third response above the first
        src, dst = find(By.ID, "rank-item-overall-3"), find(By.ID, "rank-item-overall-1")
        ActionChains(browser).click_and_hold(src).move_by_offset(0, -5).move_to_element_with_offset(
            dst, 0, -dst.size["height"] // 2 + 3).release().perform()
        order = [li.get_attribute("id")[-1] for li in find(By.ID, "rank-list-overall").find_elements(By.TAG_NAME, "li")]
        assert order == ["3", "1", "2"], order
        assert [find(By.ID, f"rank-overall-{p}").get_attribute("value") for p in (1, 2, 3)] == ["2", "3", "1"]
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(shots / "markdown_and_drag_to_rank.png"))
        expected_first = [shown_ids()[2], shown_ids()[0], shown_ids()[1]]

        # 5. a server-side validation error shows the form again with every answer kept
        browser.execute_script("document.getElementById('text-reason').value = 'y'.repeat(10001)")
        find(By.ID, "comment").send_keys("keep me")
        find(By.ID, "submit").click()
        wait.until(lambda d: d.find_elements(By.ID, "form-error"))
        assert "at most 10000 characters" in find(By.ID, "form-error").text
        browser.save_screenshot(str(shots / "validation_error_keeps_answers.png"))
        assert item_id() == first and find(By.ID, "pairwise-helpfulness-2").is_selected()
        assert find(By.ID, "likert-politeness-1-4").is_selected() and find(By.ID, "comment").get_attribute("value") == "keep me"
        assert [li.get_attribute("id")[-1] for li in
                find(By.ID, "rank-list-overall").find_elements(By.TAG_NAME, "li")] == ["3", "1", "2"]
        find(By.ID, "text-reason").clear()
        find(By.ID, "text-reason").send_keys("clearer")
        expected_pick = shown_ids()[1]
        find(By.ID, "submit").click()
        next_page(first)

        # 6. the other regular item (then the next attention slot is empty: done)
        if browser.find_elements(By.ID, "judgment-form"):
            second = item_id()
            find(By.ID, "pairwise-helpfulness-1").click()
            for p in (1, 2, 3):
                find(By.ID, f"likert-politeness-{p}-2").click()
            find(By.ID, "rank-keep-overall").click()
            find(By.ID, "submit").click()
            next_page(second)

        # 7. someone else disagrees on the first item
        with httpx.Client(base_url=srv.url) as c:
            c.post(f"/api/a/{other.token}/consent", json={"consent": True})
            rng = random.Random(0)
            while (item := c.get(f"/api/a/{other.token}/next").json()["item"]) is not None:
                answers = random_answers(item, rng)
                if item["item_id"] == first:
                    answers["helpfulness"] = next(r for r in expected_first if r != expected_pick)
                    answers["overall"] = list(reversed(expected_first))
                c.post(f"/api/a/{other.token}/items/{item['item_id']}", json={"answers": answers})

        # 8. the review page lists the dispute; the researcher decides it
        browser.get(f"{srv.url}/admin/{admin}")
        assert "quality (gold/attention)" in find(By.ID, "annotators").text
        find(By.ID, "review-link").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".dispute"))
        disputes = browser.find_elements(By.CSS_SELECTOR, f".dispute[data-item-id='{first}']")
        assert {d.get_attribute("data-dimension") for d in disputes} >= {"helpfulness"}
        browser.save_screenshot(str(shots / "review_page.png"))
        find(By.ID, f"adjudicate-{first}-helpfulness-1").click()
        find(By.ID, f"adjudicate-{first}-helpfulness").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f".dispute[data-item-id='{first}'] .adjudicated"))
        browser.save_screenshot(str(shots / "review_decided.png"))

    rows = export_judgments(url, "ui")
    mine = {(r["item_id"], r["dimension"]): r for r in rows if r["annotator_id"] == me.annotator_id}
    assert mine[(check_id, "helpfulness")]["correct"] is True
    assert mine[(first, "overall")]["value"] == expected_first
    assert mine[(first, "helpfulness")]["value"] == expected_pick
    assert mine[(first, "reason")]["value"] == "clearer" and mine[(first, "reason")]["comment"] == "keep me"
    assert any(r["kind"] == "adjudication" and r["item_id"] == first for r in rows)
    assert sorted(p.name for p in shots.iterdir()) == ["attention_check.png", "markdown_and_drag_to_rank.png",
                                                        "review_decided.png", "review_page.png",
                                                        "validation_error_keeps_answers.png"]
