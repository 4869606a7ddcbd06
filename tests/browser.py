"""What the browser tests share: headless Chromium driven by Selenium through Debian's chromium-driver (never a
driver that Selenium Manager downloads), and its console's errors."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"  # Debian's chromium-driver


def _missing(message: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


def executables() -> tuple[str, str]:
    """Chromium and chromedriver: $CHROMIUM and $CHROMEDRIVER, else the ones on PATH."""
    browser = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    driver = driver or (CHROMEDRIVER if os.access(CHROMEDRIVER, os.X_OK) else None)
    missing = [name for name, exe in (("chromium", browser), ("chromium-driver", driver)) if not exe]
    if missing:
        packages = " ".join(missing)
        _missing(f"{packages} not found: `make chromium` installs Debian's (apt-get install {packages}, as root)")
    return browser, driver


def chrome_driver(tmp_path: Path, width: int = 1280, height: int = 900) -> webdriver.Chrome:
    """Headless Chromium at width x height, its profile under tmp_path; the caller quits it."""
    browser, driver = executables()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: no download, even were a path wrong
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={width},{height}",
                # No host name resolves, localhost included: pages reach 127.0.0.1 only, never the network.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


@pytest.fixture(name="driver")
def driver_fixture(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """`driver`, a browser of each test's own, quit after it: a test file imports driver_fixture to have it."""
    chrome = chrome_driver(tmp_path)
    try:
        yield chrome
    finally:
        chrome.quit()


def console_errors(chrome: webdriver.Chrome) -> list[dict]:
    """The console's SEVERE entries since the last call: uncaught exceptions, console.error, failed loads."""
    return [entry for entry in chrome.get_log("browser") if entry["level"] == "SEVERE"]
