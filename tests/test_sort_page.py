"""The sorting page as a user has it: headless Chromium (tests/browser.py) on a real `meerkat sort`,
keys pressed on real crops, and the files checked on disk after each."""

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import chrome_driver, console_errors
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MEERKAT = Path(sys.executable).parent / "meerkat"
SAMPLES_DATA = ROOT.parent / "shared" / "data" / "deepmeerkat_samples" / "Training"
URL_LINE = re.compile(r"open (http://127\.0\.0\.1:\d+/\?token=\S+)")


def pool() -> list[Path]:
    """DeepMeerkat's sample crops, both classes, in a fixed order."""
    found = sorted(SAMPLES_DATA.glob("*/*.jpg"))
    if len(found) < 40:
        pytest.skip(f"the DeepMeerkat sample crops are missing from {SAMPLES_DATA}")
    return found


def plain_crops(folder: Path, videos: dict[str, int]) -> Path:
    """CROPS with `videos[v]` real crops in each sub-folder v ("" for CROPS itself), copied (never linked to
    ../shared, whose files are read-only and not ours)."""
    source = iter(pool())
    for video, count in videos.items():
        (folder / video).mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            crop = next(source)
            shutil.copyfile(crop, folder / video / crop.name)
    return folder


# clips --model's scores, each crop taken from the class its score points to; two of them near 0.5.
SCORES = {"v1/v1_3.jpg": 0.93, "v1/v1_12.jpg": 0.08, "v1/v1_40.jpg": 0.71,
          "v2/v2_9.jpg": 0.30, "v2/v2_10.jpg": 0.52, "v2/v2_100.jpg": 0.97, "v2/v2_101.jpg": 0.22,
          "v10/v10_1.jpg": 0.12, "v10/v10_2.jpg": 0.67, "v10/v10_11.jpg": 0.46, "v10/v10_20.jpg": 0.81,
          "v10/v10_21.jpg": 0.35, "v11/v11_5.jpg": 0.25, "v11/v11_6.jpg": 0.89, "v11/v11_40.jpg": 0.04,
          "v11/v11_41.jpg": 0.58, "v12/v12_7.jpg": 0.17, "v12/v12_8.jpg": 0.76, "v12/v12_30.jpg": 0.40,
          "v12/v12_31.jpg": 0.99, "v12/v12_90.jpg": 0.63}  # fmt: skip
BY_NAME = ["v1/v1_3.jpg", "v1/v1_12.jpg", "v1/v1_40.jpg", "v2/v2_9.jpg", "v2/v2_10.jpg", "v2/v2_100.jpg",
           "v2/v2_101.jpg", "v10/v10_1.jpg", "v10/v10_2.jpg", "v10/v10_11.jpg", "v10/v10_20.jpg", "v10/v10_21.jpg",
           "v11/v11_5.jpg", "v11/v11_6.jpg", "v11/v11_40.jpg", "v11/v11_41.jpg", "v12/v12_7.jpg", "v12/v12_8.jpg",
           "v12/v12_30.jpg", "v12/v12_31.jpg", "v12/v12_90.jpg"]  # fmt: skip


def guessed_crops(folder: Path) -> Path:
    """CROPS as `clips --model` leaves it: crops in video folders, and suggested/<Positives|Negatives>/
    with hard links of them beside suggested/scores.csv (apply/suggest.py's columns)."""
    real = {label: iter(p for p in pool() if p.parent.name == f"{label.capitalize()}s")
            for label in ("positive", "negative")}  # fmt: skip
    rows = []
    for rel, score in SCORES.items():
        label = "positive" if score >= 0.5 else "negative"
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(next(real[label]), path)
        suggested = folder / "suggested" / f"{label.capitalize()}s"
        suggested.mkdir(parents=True, exist_ok=True)
        os.link(path, suggested / path.name)
        rows.append([f"{rel.split('/')[0]}.mp4", path.name, f"{score:.6f}", label])
    with open(folder / "suggested" / "scores.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["source", "crop", "score_positive", "suggested"], *rows])
    return folder


class Sorter:
    """`meerkat sort` subprocesses, and the one browser that opens their pages."""

    def __init__(self, driver):
        self.driver = driver
        self.running: list[subprocess.Popen] = []

    def start(self, crops: Path, samples: Path, cwd: Path | None = None) -> str:
        """Start `meerkat sort CROPS SAMPLES --port 0` (in `cwd`); its URL, from the line it logs."""
        process = subprocess.Popen([str(MEERKAT), "sort", str(crops), str(samples), "--port", "0"],
                                   stdout=subprocess.PIPE, text=True, cwd=cwd)  # fmt: skip
        self.running.append(process)
        lines = []
        while line := process.stdout.readline():
            lines.append(line)
            if match := URL_LINE.search(line):
                return match.group(1)
        pytest.fail(f"meerkat sort exited ({process.wait()}) without a URL: {''.join(lines)}")

    def stop(self, how=signal.SIGINT) -> int:
        """Stop the newest server as Ctrl-C (or a SIGTERM) does; its exit status."""
        process = self.running.pop()
        process.send_signal(how)
        try:
            return process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        finally:
            process.stdout.close()

    def open(self, url: str) -> None:
        """The page at `url`, once its first screen is built and the thumbnails in sight have loaded."""
        self.driver.get(url)
        self.wait_ready()

    def wait_ready(self) -> None:
        until(self.driver, lambda: self.driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        until(self.driver, lambda: self.driver.execute_script(
            "return [...document.querySelectorAll('#grid img')]"
            ".filter((i) => i.getBoundingClientRect().top < innerHeight)"
            ".every((i) => i.complete && i.naturalWidth > 0)"))  # fmt: skip


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator:
    """One headless Chromium for the module: each test opens a page of its own server."""
    chrome = chrome_driver(tmp_path_factory.mktemp("chromium"), 1280, 900)
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture
def sorter(browser) -> Iterator[Sorter]:
    console_errors(browser)  # an earlier test's, if it failed
    runs = Sorter(browser)
    try:
        yield runs
    finally:
        browser.get("about:blank")  # no request of this page to the server about to stop
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})  # a test's page size, if it set one
        while runs.running:
            runs.stop()


def until(driver, condition, timeout: float = 15):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda _: condition())


def press(driver, *keys: str) -> None:
    driver.find_element(By.TAG_NAME, "body").send_keys(*keys)


def names(driver) -> list[str]:
    """The crops on the page, in its order: their paths below CROPS."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#grid figure.card .name')].map((e) => e.textContent)"
    )


def focused(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "figure.card.focus .name").text


def left(driver) -> int:
    return int(driver.find_element(By.ID, "left").text)


def count(driver, name: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, f'#classes button.class[data-name="{name}"] .count').text


def new_class(driver, name: str) -> None:
    field = driver.find_element(By.ID, "new-class-name")
    field.send_keys(name, Keys.ENTER)
    until(driver, lambda: driver.find_elements(By.CSS_SELECTOR, f'#classes button.class[data-name="{name}"]'))


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_digit_keys_move_the_focused_crop_into_that_class(sorter, tmp_path):
    crops = plain_crops(tmp_path / "crops", {"v1": 4, "v2": 4, "": 2})
    samples = tmp_path / "samples"
    before = {rel: (crops / rel).read_bytes() for rel in files(crops)}
    sorter.open(sorter.start(crops, samples))
    driver = sorter.driver
    assert left(driver) == 10
    new_class(driver, "Deer")
    new_class(driver, "Empty")  # keys by name: Deer 1, Empty 2
    assert driver.find_element(By.CSS_SELECTOR, 'button.class[data-name="Empty"] kbd').text == "2"
    assert (samples / "Training" / "Empty").is_dir()

    first = focused(driver)
    press(driver, "1")
    until(driver, lambda: left(driver) == 9)
    second = focused(driver)
    press(driver, "2")
    until(driver, lambda: left(driver) == 8)
    assert driver.find_element(By.ID, "message").text == f"Moved Training/Empty/{Path(second).name}"

    for rel, cls in ((first, "Deer"), (second, "Empty")):
        assert not (crops / rel).exists()
        moved = samples / "Training" / cls / Path(rel).name
        assert moved.read_bytes() == before[rel]
        assert rel not in names(driver)
    assert (count(driver, "Deer"), count(driver, "Empty")) == ("(1)", "(1)")
    assert driver.find_element(By.ID, "sorted").text == "2"
    assert files(crops) == set(before) - {first, second}
    assert console_errors(driver) == []


def test_keys_pressed_faster_than_the_server_answers_each_move_a_crop(sorter, tmp_path):
    crops = plain_crops(tmp_path / "crops", {"v1": 6})
    samples = tmp_path / "samples"
    (samples / "Training" / "Deer").mkdir(parents=True)
    sorter.open(sorter.start(crops, samples))
    driver = sorter.driver
    press(driver, "1", "1", "1")  # one send: the second comes before the first's answer
    until(driver, lambda: len(files(samples / "Training" / "Deer")) == 3 and left(driver) == 3)
    assert len(files(crops)) == 3
    assert count(driver, "Deer") == "(3)"
    assert console_errors(driver) == []


def test_undo_puts_the_crop_back_and_shows_it_first_even_after_a_reload_or_a_restart(sorter, tmp_path):
    crops = plain_crops(tmp_path / "crops", {"v1": 3, "v2": 3})
    samples = tmp_path / "samples"
    (samples / "Training" / "Deer").mkdir(parents=True)
    before = {rel: (crops / rel).read_bytes() for rel in files(crops)}
    sorter.open(sorter.start(crops, samples))
    driver = sorter.driver
    deer = samples / "Training" / "Deer"

    def sort_one() -> str:
        """Press 1 on the second crop (the one after it comes first, so "first" means undo put it there)."""
        n = left(driver)
        press(driver, Keys.ARROW_RIGHT)
        rel = focused(driver)
        press(driver, "1")
        until(driver, lambda: left(driver) == n - 1)
        assert not (crops / rel).exists() and (deer / Path(rel).name).is_file()
        return rel

    def undo_brings_back(rel: str) -> None:
        n = left(driver)
        press(driver, "u")
        until(driver, lambda: left(driver) == n + 1)
        assert (crops / rel).read_bytes() == before[rel]
        assert files(deer) == set()
        assert names(driver)[0] == rel and focused(driver) == rel
        assert count(driver, "Deer") == "(0)"

    undo_brings_back(sort_one())

    rel = sort_one()
    driver.refresh()
    sorter.wait_ready()
    assert rel not in names(driver)
    assert rel in (samples / "meerkat-sort" / "moves.jsonl").read_text(encoding="utf-8")  # what undo reads back
    undo_brings_back(rel)

    rel = sort_one()
    assert sorter.stop(signal.SIGTERM) == 0  # as `docker stop` does
    sorter.open(sorter.start(crops, samples))
    assert rel not in names(driver) and left(driver) == 5
    undo_brings_back(rel)
    assert files(crops) == set(before)
    assert console_errors(driver) == []


def test_shift_arrows_select_a_run_that_one_key_moves_and_one_undo_brings_back(sorter, tmp_path):
    crops = plain_crops(tmp_path / "crops", {"v1": 5, "v2": 2})
    samples = tmp_path / "samples"
    (samples / "Training" / "Deer").mkdir(parents=True)
    sorter.open(sorter.start(crops, samples))
    driver = sorter.driver
    run = names(driver)[:3]
    ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT).key_up(Keys.SHIFT).perform()
    selected = driver.find_elements(By.CSS_SELECTOR, "figure.card.selected .name")
    assert [e.text for e in selected] == run
    press(driver, "1")
    until(driver, lambda: left(driver) == 4)
    assert files(samples / "Training" / "Deer") == {Path(rel).name for rel in run}
    assert not any((crops / rel).exists() for rel in run)
    assert count(driver, "Deer") == "(3)"

    press(driver, "u")
    until(driver, lambda: left(driver) == 7)
    assert all((crops / rel).is_file() for rel in run)
    assert files(samples / "Training" / "Deer") == set()
    assert names(driver)[:3] == run
    assert console_errors(driver) == []


def test_skip_puts_the_crop_last_and_it_stays_last_after_a_reload(sorter, tmp_path):
    crops = plain_crops(tmp_path / "crops", {"v1": 3, "v2": 3})
    sorter.open(sorter.start(crops, tmp_path / "samples"))
    driver = sorter.driver
    order = names(driver)
    press(driver, "s")
    until(driver, lambda: names(driver)[-1] == order[0])
    assert names(driver) == order[1:] + order[:1]
    assert focused(driver) == order[1]
    assert files(crops) == set(order)  # nothing moved
    driver.refresh()
    sorter.wait_ready()
    assert names(driver) == order[1:] + order[:1]
    assert console_errors(driver) == []


def test_the_least_sure_guess_comes_first_name_order_is_natural_and_enter_accepts(sorter, tmp_path):
    crops = guessed_crops(tmp_path / "crops")
    samples = tmp_path / "samples"
    sorter.open(sorter.start(crops, samples))
    driver = sorter.driver
    unsure_first = sorted(SCORES, key=lambda rel: abs(SCORES[rel] - 0.5))
    assert names(driver) == unsure_first  # suggested/ holds links of the same crops: not listed twice
    first = driver.find_element(By.CSS_SELECTOR, "figure.card")
    assert first.find_element(By.CSS_SELECTOR, ".guess").text == "2 Positives"  # keys: Negatives 1, Positives 2
    assert first.find_element(By.CSS_SELECTOR, ".score").text == "0.52"
    assert "guesses from the suggestions in" in driver.find_element(By.ID, "where").text

    Select(driver.find_element(By.ID, "order")).select_by_value("name")
    until(driver, lambda: names(driver) == BY_NAME)  # v2 before v10, frame 9 before frame 10
    Select(driver.find_element(By.ID, "order")).select_by_value("uncertain")
    until(driver, lambda: names(driver) == unsure_first)

    body = crops / "v2" / "v2_10.jpg"
    data = body.read_bytes()
    press(driver, Keys.ENTER)  # v2_10: positive at 0.52
    until(driver, lambda: left(driver) == len(SCORES) - 1)
    press(driver, "a")  # v10_11: negative at 0.46 (0.54 sure)
    until(driver, lambda: left(driver) == len(SCORES) - 2)
    training = samples / "Training"
    assert files(training) == {"Positives/v2_10.jpg", "Negatives/v10_11.jpg"}
    assert (training / "Positives" / "v2_10.jpg").read_bytes() == data and not body.exists()
    assert not (crops / "v10" / "v10_11.jpg").exists()
    assert (count(driver, "Negatives"), count(driver, "Positives")) == ("(1)", "(1)")
    assert console_errors(driver) == []


def test_screenshot_of_the_page_with_guesses_for_the_docs(sorter, tmp_path):
    guessed_crops(tmp_path / "Crops")
    driver = sorter.driver
    # The window's 900 px hold the browser's own bars too, even headless: the page itself at 1280x900.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
    sorter.open(sorter.start(Path("Crops"), Path("Samples"), cwd=tmp_path))  # the docs' names, not pytest's
    assert driver.execute_script("return [innerWidth, innerHeight]") == [1280, 900]
    press(driver, Keys.ENTER)
    until(driver, lambda: left(driver) == len(SCORES) - 1)
    ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ARROW_RIGHT).key_up(Keys.SHIFT).perform()
    sorter.wait_ready()
    shot = ROOT / "build" / "sort-page.png"
    shot.parent.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(shot))
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000
    assert (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")) == (1280, 900)
    docs = ROOT / "docs" / "images"
    docs.mkdir(exist_ok=True)
    shutil.copyfile(shot, docs / "sort-page.png")
    assert console_errors(driver) == []


def test_a_name_taken_in_the_class_folder_gets_a_suffix_and_the_page_says_so(sorter, tmp_path):
    crops = plain_crops(tmp_path / "crops", {"v1": 3})
    samples = tmp_path / "samples"
    deer = samples / "Training" / "Deer"
    deer.mkdir(parents=True)
    first = sorted(files(crops))[0]
    name = Path(first).name
    shutil.copyfile(pool()[-1], deer / name)  # another crop of that name, sorted before
    data = (crops / first).read_bytes()
    sorter.open(sorter.start(crops, samples))
    driver = sorter.driver
    assert focused(driver) == first and count(driver, "Deer") == "(1)"
    press(driver, "1")
    until(driver, lambda: left(driver) == 2)
    stem = Path(name).stem
    assert (deer / f"{stem}-2.jpg").read_bytes() == data
    assert (deer / name).read_bytes() == pool()[-1].read_bytes()
    assert f"saved as Training/Deer/{stem}-2.jpg" in driver.find_element(By.ID, "message").text
    assert count(driver, "Deer") == "(2)"
    assert console_errors(driver) == []


def test_a_crop_deleted_behind_the_pages_back_is_a_problem_shown_and_the_page_goes_on(sorter, tmp_path):
    crops = plain_crops(tmp_path / "crops", {"v1": 4})
    samples = tmp_path / "samples"
    (samples / "Training" / "Deer").mkdir(parents=True)
    sorter.open(sorter.start(crops, samples))
    driver = sorter.driver
    gone, *rest = names(driver)
    (crops / gone).unlink()
    press(driver, "1")
    until(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "#problems li"))
    problem = driver.find_element(By.CSS_SELECTOR, "#problems li").text
    assert gone in problem and "gone" in problem
    assert files(samples / "Training" / "Deer") == set()
    assert files(crops) == set(rest)
    until(driver, lambda: names(driver) == rest)
    press(driver, "1")
    until(driver, lambda: left(driver) == 2)
    assert files(samples / "Training" / "Deer") == {Path(rest[0]).name}
    assert console_errors(driver) == []


def test_when_the_last_crop_is_sorted_the_page_says_what_to_run_next(sorter, tmp_path):
    crops = plain_crops(tmp_path / "crops", {"v1": 2, "": 1})
    samples = tmp_path / "samples"
    (samples / "Training" / "Deer").mkdir(parents=True)
    sorter.open(sorter.start(crops, samples))
    driver = sorter.driver
    finished = driver.find_element(By.ID, "finished")
    assert not finished.is_displayed()
    for n in (2, 1, 0):
        press(driver, "1")
        until(driver, lambda n=n: left(driver) == n)
    assert files(crops) == set()
    assert len(files(samples / "Training" / "Deer")) == 3
    until(driver, finished.is_displayed)
    assert finished.find_element(By.CSS_SELECTOR, "code.next").text == f"meerkat run {samples} OUTPUT"
    assert console_errors(driver) == []
