"""The HTML page in a real browser: headless Chromium (Debian's chromium + chromium-driver) through Selenium.

It loads the page from a loopback server at a phone's width, takes a screenshot, and reads the DOM the browser
built: every story and outlet is there, no script element or event handler exists, and no hostile payload ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from test_render import hostile_stories, meta, story

from aggregator.render import render

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PHONE = (390, 844)
# Everything Chromium would do on its own (updates, sync, metrics) is off: the test talks to loopback only.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--hide-scrollbars",
    f"--window-size={PHONE[0]},{PHONE[1]}",
)
PAGE_TIMEOUT_SECONDS = 20
# Every payload that could run sets this; the page must load without any of them doing so.
CANARY = "window.__xss"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="headless Chromium is not installed (apt-get install chromium chromium-driver); .ci/run installs it",
)


@pytest.fixture
def browser() -> Iterator[object]:
    """A headless Chromium driven by Debian's chromedriver; no driver or browser download."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT_SECONDS)
    driver.set_script_timeout(PAGE_TIMEOUT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_html_page_shows_the_stories_in_chromium(browser: object, httpserver: HTTPServer, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    hostile = [replace(s, summary=(s.summary or "").replace("alert(1)", CANARY + "=1")) for s in hostile_stories()]
    stories = [story(0, outlets=3), story(1, outlets=1), story(30, outlets=2), *hostile]
    page = render(stories, meta("html"))
    httpserver.expect_request("/index.html").respond_with_data(page, content_type="text/html; charset=utf-8")

    browser.get(httpserver.url_for("/index.html"))
    WebDriverWait(browser, PAGE_TIMEOUT_SECONDS).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    screenshot = tmp_path / "river.png"
    assert browser.save_screenshot(str(screenshot))
    data = screenshot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000

    assert browser.title == "World desk"
    titles = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "article h3")]
    assert titles[:3] == [s.title for s in stories[:3]]
    assert len(titles) == len(stories)
    first = browser.find_elements(By.CSS_SELECTOR, "article")[0]
    outlets = [
        (li.find_element(By.CSS_SELECTOR, "span.outlet").text, li.find_element(By.TAG_NAME, "a").get_attribute("href"))
        for li in first.find_elements(By.CSS_SELECTOR, ".outlets li")
    ]
    assert outlets == [(f"Outlet {k}", f"https://outlet{k}.example/news/0") for k in range(3)]
    assert "Summary of story 0." in first.text
    days = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h2")]
    assert days[:2] == ["SUNDAY 1 MARCH 2026", "SATURDAY 28 FEBRUARY 2026"]  # text-transform: uppercase

    # nothing executable made it into the DOM the browser built, and nothing ran
    assert browser.execute_script("return document.scripts.length") == 0
    handlers = browser.execute_script(
        "return [...document.querySelectorAll('*')].flatMap(e => [...e.attributes]"
        ".filter(a => a.name.startsWith('on')).map(a => e.tagName + ' ' + a.name))"
    )
    assert handlers == []
    bad_links = browser.execute_script(
        "return [...document.querySelectorAll('[href],[src],[action],[formaction]')]"
        ".map(e => e.href || e.src || e.getAttribute('action') || e.getAttribute('formaction'))"
        ".filter(u => !/^(https?:|#)/.test(u) && !u.startsWith(location.origin))"
    )
    assert bad_links == []
    assert browser.execute_script("return document.querySelectorAll('iframe,object,embed,svg,form').length") == 0
    assert browser.execute_script(f"return typeof {CANARY}") == "undefined"

    # readable on a phone: nothing is wider than the screen
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
