"""tests/browser.py's plumbing: Selenium drives headless Chromium on a page served from 127.0.0.1, sends it keys,
and reads its console's errors."""

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import browser
import pytest
from browser import console_errors, driver_fixture  # noqa: F401 - the driver fixture
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

KEYS = """<button id="b">waiting</button>
<script>
document.addEventListener("keydown", (e) => { document.getElementById("b").textContent = "pressed " + e.key; });
</script>"""


def page(title: str, body: str) -> str:
    # An icon of its own: else Chromium's request for /favicon.ico is a 404, a console error.
    head = f'<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>{title}</title>'
    return f"{head}</head><body>{body}</body></html>"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass  # pytest's output, not one line per request


@contextmanager
def served(folder: Path) -> Iterator[str]:
    """`folder` over HTTP on 127.0.0.1, a free port, while in the block: its URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            thread.join()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "keys.html").write_text(page("keys", KEYS), encoding="utf-8")
    throws = '<script>throw new Error("deliberately broken page");</script>'
    (folder / "throws.html").write_text(page("throws", throws), encoding="utf-8")
    with served(folder) as url:
        yield url


@pytest.mark.slow
def test_a_key_press_changes_the_page_without_console_errors(driver, site):
    driver.get(site + "keys.html")
    button = driver.find_element(By.ID, "b")
    assert button.text == "waiting"
    button.send_keys(Keys.ARROW_RIGHT)
    assert button.text == "pressed ArrowRight"
    driver.find_element(By.TAG_NAME, "body").send_keys("k")
    assert button.text == "pressed k"
    assert console_errors(driver) == []


@pytest.mark.slow
def test_an_uncaught_exception_is_a_console_error(driver, site):
    driver.get(site + "throws.html")
    errors = console_errors(driver)
    assert len(errors) == 1, errors
    assert "deliberately broken page" in errors[0]["message"]


@pytest.mark.slow
def test_pages_reach_127_0_0_1_but_no_host_name(driver, site):
    driver.get(site + "keys.html")
    assert driver.title == "keys"
    with pytest.raises(WebDriverException, match="ERR_NAME_NOT_RESOLVED"):
        driver.get(site.replace("127.0.0.1", "localhost") + "keys.html")


@pytest.mark.parametrize("ci", ["", "true"])
def test_without_chromedriver_the_tests_skip_naming_make_chromium_but_fail_in_ci(monkeypatch, tmp_path, ci):
    for name in ("CHROMIUM", "CHROMEDRIVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CI", ci)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(browser, "CHROMEDRIVER", str(tmp_path / "chromedriver"))
    with pytest.raises(pytest.fail.Exception if ci else pytest.skip.Exception, match="`make chromium`"):
        browser.chrome_driver(tmp_path)
