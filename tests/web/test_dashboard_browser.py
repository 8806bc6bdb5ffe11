"""The dashboard in a real browser: Debian's chromium, headless, against a real gunicorn.

The service runs with API keys, so the browser signs in through the page's
form first. Then every chart must have loaded (natural width > 0), and the
lookup form must show a known user's personal list and an unknown user's
fallback reason. A screenshot is saved in the test's temporary folder; with
``RECSYS_UPDATE_SCREENSHOT=1`` it is also copied to docs/dashboard.png (the
README's picture), so a test run leaves the checkout unchanged.

Needs ``chromium`` and ``chromium-driver`` (Debian packages); skipped with the
reason when they are absent, unless ``RECSYS_REQUIRE_CHROMIUM=1`` (CI), which
makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.builders import BUNDLED_LOG
from tests.servers import ROOT, Gunicorn, http_request, service_env
from tests.web.test_auth import API_KEYS, KEYS

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = ROOT / "docs" / "dashboard.png"
WAIT_SECONDS = 20
KNOWN_USER = 17
UNKNOWN_USER = 999_999


def require_chromium() -> None:
    """Skip (or, with RECSYS_REQUIRE_CHROMIUM=1, fail) without Debian's chromium and driver."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    reason = (
        f"no {' and no '.join(missing)}: `apt-get install chromium chromium-driver` "
        "to run the browser test"
    )
    if os.environ.get("RECSYS_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"{reason} (RECSYS_REQUIRE_CHROMIUM=1 makes chromium mandatory)")
    pytest.skip(f"{reason}; set RECSYS_REQUIRE_CHROMIUM=1 to make this a failure")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("browser")
    env = service_env(
        f"sqlite:///{state / 'events.db'}",
        state / "models",
        WORKERS=1,
        DATA_PATH=BUNDLED_LOG,
        API_KEYS=API_KEYS,
    )
    gunicorn = Gunicorn(env, state / "logs")
    try:
        gunicorn.wait_ready(within=120)
        yield gunicorn
    finally:
        gunicorn.stop()


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    # The Debian driver, named: Selenium must not try to download one.
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait_for(browser, css: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_SECONDS).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def look_up_user(browser, user_id: int) -> None:
    from selenium.webdriver.common.by import By

    field = browser.find_element(By.ID, "user_id")
    field.clear()
    field.send_keys(str(user_id))
    browser.find_element(By.CSS_SELECTOR, "#user-form button").click()
    wait_for(browser, f'#user-result[data-user-id="{user_id}"]')


def recommended_ids(browser) -> list[int]:
    from selenium.webdriver.common.by import By

    rows = browser.find_elements(By.CSS_SELECTOR, "#recommendations tr td:nth-child(2)")
    return [int(cell.text) for cell in rows]


@pytest.fixture(scope="module")
def signed_in(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"http://127.0.0.1:{server.port}/")
    wait_for(browser, "#signin")
    browser.find_element(By.ID, "api-key").send_keys(KEYS["read"])
    browser.find_element(By.CSS_SELECTOR, "#signin button").click()
    wait_for(browser, "#overview")
    return browser


def test_every_chart_image_loaded(signed_in):
    from selenium.webdriver.support.ui import WebDriverWait

    images = "Array.from(document.querySelectorAll('img.chart'))"
    WebDriverWait(signed_in, WAIT_SECONDS).until(
        lambda b: b.execute_script(f"return {images}.every(i => i.complete)")
    )
    loaded = signed_in.execute_script(f"return {images}.map(i => [i.src, i.naturalWidth])")
    assert len(loaded) == 5
    assert all(width > 0 for _, width in loaded), loaded


def test_the_overview_shows_the_bundled_data(signed_in):
    from selenium.webdriver.common.by import By

    assert signed_in.find_element(By.ID, "figure-users").text == "100"
    assert signed_in.find_element(By.ID, "figure-interactions").text == "3223"
    assert signed_in.find_element(By.ID, "model-type").text.startswith("svd")


def test_a_known_user_gets_a_personal_list(server, signed_in):
    from selenium.webdriver.common.by import By

    look_up_user(signed_in, KNOWN_USER)
    assert signed_in.find_element(By.ID, "strategy").text == "svd"
    assert not signed_in.find_elements(By.ID, "fallback-reason")
    path = f"/recommend?user_id={KNOWN_USER}&n=10"
    answer = http_request(server.port, "GET", path, headers={"X-API-Key": KEYS["read"]}).body
    assert recommended_ids(signed_in) == [r["product_id"] for r in answer["recommendations"]]
    assert signed_in.find_elements(By.CSS_SELECTOR, "#history tr td")


def test_an_unknown_user_gets_popular_products_and_the_fallback_reason(signed_in):
    from selenium.webdriver.common.by import By

    look_up_user(signed_in, UNKNOWN_USER)
    assert signed_in.find_element(By.ID, "strategy").text == "popular"
    assert signed_in.find_element(By.ID, "fallback-reason").text == "unknown_user"
    assert len(recommended_ids(signed_in)) == 10


def test_a_screenshot_of_the_dashboard_is_saved(signed_in, tmp_path):
    look_up_user(signed_in, KNOWN_USER)
    height = signed_in.execute_script("return document.documentElement.scrollHeight")
    signed_in.set_window_size(1400, height)
    shot = tmp_path / "dashboard.png"
    assert signed_in.save_screenshot(str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 50_000
    if os.environ.get("RECSYS_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)


def test_the_api_docs_page_renders_every_operation_under_its_content_policy(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"http://127.0.0.1:{server.port}/docs")
    wait_for(browser, ".opblock")
    operations = browser.find_elements(By.CSS_SELECTOR, ".opblock")
    blocked = [
        entry["message"]
        for entry in browser.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]
    assert len(operations) >= 15
    assert blocked == []
