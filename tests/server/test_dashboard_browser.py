"""The dashboard in a real browser: Debian's chromium, headless, driven by selenium through chromedriver.

STUDYAPP_SCREENSHOT=1 writes the screenshot to docs/dashboard.png (the README shows it); otherwise to tmp_path.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server.known_study import BAD_ROLE, upload_known_study
from tests.server.live import LiveServer

ROOT = Path(__file__).resolve().parents[2]
INSTALL = "apt-get install chromium chromium-driver (Debian's headless browser and its driver)"
# Without network, chromium must not look anything up: without these flags it hangs at start.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,900")
WAIT_S = 30


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        _missing(f"chromium or chromedriver is not installed: {INSTALL}")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    # The driver is named, so selenium never tries to fetch one.
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _cells(row: Any) -> dict[str, str]:
    return {td.get_attribute("data-col"): td.text for td in row.find_elements("css selector", "td")}


def _screenshot(driver: Any, tmp_path: Path) -> Path:
    # The whole page in one picture: a viewport as tall as the document (a window cannot outgrow the screen).
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False})
    path = ROOT / "docs" / "dashboard.png" if os.environ.get("STUDYAPP_SCREENSHOT") == "1" else tmp_path / "dash.png"
    assert driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return path


def test_a_researcher_logs_in_and_reads_the_dashboard(live: LiveServer, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    known = upload_known_study(live)
    wait = WebDriverWait(browser, WAIT_S)
    browser.get(f"{live.base_url}/dashboard")
    field = wait.until(ec.presence_of_element_located(("id", "token")))
    field.send_keys(live.researcher_token)
    browser.find_element("id", "login").click()
    wait.until(ec.presence_of_element_located(("id", "participants")))
    assert browser.current_url == f"{live.base_url}/dashboard"
    assert live.researcher_token not in browser.page_source

    rows = {r.get_attribute("data-participant"): _cells(r)
            for r in browser.find_elements("css selector", "#participants tbody tr")}
    assert set(rows) == {known.active, known.stopped}
    active, stopped = rows[known.active], rows[known.stopped]
    columns = ("status", "study_week", "rated_this_week", "rated", "rejected")
    assert [active[c] for c in columns] == ["active", "1", "2", "2", "4"]
    assert [stopped[c] for c in columns] == ["stopped", "2", "0", "1", "0"]
    assert int(active["days_active"]) == known.days_active[known.active]

    assert browser.find_element("id", "rejected-total").text == "4"
    reasons = [_cells(r) for r in browser.find_elements("css selector", "#rejections tbody tr")]
    assert [(r["reason"], r["kind"], r["events"]) for r in reasons] == [
        (known.role_reason, "message", "3"), (known.unknown_kind_reason, "(unknown)", "1")]
    assert BAD_ROLE in reasons[0]["reason"]  # markup in a reason reads as text
    assert browser.find_elements("css selector", "#rejections i") == []
    withdrawn = [_cells(r) for r in browser.find_elements("css selector", "#withdrawals tbody tr")]
    assert [w["participant_id"] for w in withdrawn] == [known.withdrawn]
    assert browser.find_element("id", "headline").is_displayed()

    assert _screenshot(browser, tmp_path).stat().st_size > 0

    browser.find_element("id", "logout").click()
    wait.until(ec.presence_of_element_located(("id", "token")))
    assert browser.get_cookies() == []
    browser.get(f"{live.base_url}/dashboard")
    wait.until(ec.presence_of_element_located(("id", "token")))
    assert browser.find_elements("id", "participants") == []
