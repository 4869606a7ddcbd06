"""report/index.html: what it shows, that it stands alone on disk, and that it renders in headless
Chromium with every image loaded and no console error; plus the same figures in TensorBoard."""

import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, write_image, write_species_image

from meerkat.core import atomic, ownership
from meerkat.embed.weights import sha256
from meerkat.report import metrics, mistakes, summaries
from meerkat.report import page as report_page
from meerkat.report.facts import Facts, split_counts

BUILD = ROOT / "build"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
NAMES = ["positive", "negative"]
# Eval scores: at 0.5, two false positives (0.7, 0.55) and two false negatives (0.3, 0.1).
POSITIVE_SCORES = [0.95, 0.9, 0.8, 0.6, 0.3, 0.1]
NEGATIVE_SCORES = [0.7, 0.55, 0.4, 0.2, 0.1, 0.05]


def make_facts(tmp_path: Path) -> Facts:
    """The facts of a small made-up run, with crops on disk, a history, skipped and ignored files."""
    samples = tmp_path / "Samples"
    uris, labels, scores = [], [], []
    for label, name, values in ((0, "Positives", POSITIVE_SCORES), (1, "Negatives", NEGATIVE_SCORES)):
        for i, s in enumerate(values):
            path = write_image(samples / "Testing" / name / f"{name[0].lower()}{i}.jpg", seed=10 * label + i,
                               size=(120, 90 + 20 * i), positive=label == 0)  # fmt: skip
            uris.append(str(path))
            labels.append(label)
            scores.append(s)
    labels, scores = np.array(labels), np.array(scores)
    probs = np.stack([scores, 1 - scores], 1)
    evaluation = metrics.evaluate_thresholds(labels, probs)
    output = atomic.ensure_dir(tmp_path / "out" / "report").parent
    run = {
        "meerkat_version": "0.1.0",
        "meerkat_revision": "0123456789abcdef0123456789abcdef01234567",
        "tensorflow_version": "2.21.0",
        "python_version": "3.11.7",
        "backbone": {
            "name": "mobilenet_v2",
            "alpha": 0.35,
            "weights": "/w/mobilenet.h5",
            "weights_sha256": "ab" * 32,
            "precision": "float32",
        },  # fmt: skip
        "train_config": {"epochs": 5, "batch_size": 4, "validation_fraction": 0.15, "seed": 42},
        "train_counts": {"positive": 17, "negative": 17},
        "validation_counts": {"positive": 3, "negative": 3},
        "best_epoch": 3,
        "stopped_epoch": 5,
        "train_seconds": 1.5,
    }
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4, 5],
            "step": [9, 18, 27, 36, 45],
            "train_loss": [0.6, 0.4, 0.3, 0.2, 0.15],
            "train_accuracy": [0.7, 0.8, 0.85, 0.9, 0.95],
            "validation_loss": [0.65, 0.5, 0.45, 0.5, 0.55],
            "validation_accuracy": [0.6, 0.7, 0.8, 0.75, 0.7],
        }
    )
    return Facts(
        output=output,
        names=NAMES,
        uris=uris,
        labels=labels,
        metrics={**metrics.metrics(labels, probs, NAMES), **metrics.summary(evaluation)},
        evaluation=evaluation,
        counts=split_counts(run, np.array([0] * 20 + [1] * 20), labels, NAMES),
        run=run,
        source=str(samples),
        training_source=str(samples / "Training"),
        image_size=224,
        skipped=[("training", str(samples / "Training" / "Positives" / "zero.jpg"), "empty file (0 bytes)")],
        ignored=[(str(samples / "Training" / "notes.txt"), "not an image extension (.txt)")],
        history=history,
    )


def make_species_facts(tmp_path: Path, names, per_class: int = 3, seed: int = 0) -> Facts:
    """The facts of a made-up run of any number of classes: crops on disk, scores that mostly pick
    the right class, and each class's counts."""
    rng = np.random.default_rng(seed)
    samples = tmp_path / "Samples"
    uris, labels = [], []
    for label, name in enumerate(names):
        for i in range(per_class):
            path = samples / "Testing" / name / f"{label}_{i}.jpg"
            uris.append(str(write_species_image(path, label % 6, seed=1000 * label + i)))
            labels.append(label)
    labels = np.array(labels)
    logits = rng.normal(size=(len(labels), len(names)))
    logits[np.arange(len(labels)), labels] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    summary, evaluation = metrics.evaluate(labels, probs, list(names))
    run = {"train_counts": {n: 8 for n in names}, "validation_counts": {n: 2 for n in names}, "best_epoch": 2,
           "class_weights": "balanced", "train_seconds": 1.5}  # fmt: skip
    return Facts(
        output=atomic.ensure_dir(tmp_path / "out" / "report").parent,
        names=list(names),
        uris=uris,
        labels=labels,
        metrics=summary,
        evaluation=evaluation,
        counts=split_counts(run, np.repeat(np.arange(len(names)), 10), labels, list(names)),
        run=run,
        source=str(samples),
        training_source=str(samples / "Training"),
        image_size=224,
        probabilities=probs,
    )


SPECIES3 = ("Red fox", "deer", "empty")
# 29 animals, some with long names, and a background class: what a camera-trap project may have.
SPECIES30 = (
    *(f"{'White-tailed long-eared ' if i % 5 == 0 else ''}species {i:02d}" for i in range(29)),
    "empty",
)


def test_a_species_page_shows_the_matrix_per_class_figures_and_mistakes_per_class(tmp_path):
    facts = make_species_facts(tmp_path, SPECIES3)
    report_page.write_page(facts)
    text = (facts.output / "report" / "index.html").read_text(encoding="utf-8")
    m = facts.metrics
    # The N x N matrix: a row and a column a class, counts and shares of the row.
    matrix = re.search(r'<table class="matrix">.*?</table>', text, re.S).group(0)
    assert matrix.count("<tr>") == 1 + len(SPECIES3)
    for i, row in enumerate(m["confusion_matrix"]["matrix"]):
        for count in row:
            share = f"{count / sum(row):.0%}"
            assert f"<b>{count}</b><br><small>{share}</small>" in matrix
        assert f'<th scope="row">{html.escape(SPECIES3[i])}</th>' in matrix
    # Precision, recall, F1 and support of each class; macro-F1 and top-1 (no top-3 with 3 classes).
    per = re.search(r'<table class="per-class">.*?</table>', text, re.S).group(0)
    for name in SPECIES3:
        f = m["per_class"][name]
        assert f'<td>{html.escape(name)}</td><td class="n">{f["support"]}</td>' in per, name
    assert "macro-F1" in text and f"{m['macro_f1']:.3f}" in text
    assert "top-1 accuracy" in text and f"{m['top1']:.3f}" in text and "top-3" not in text
    # The threshold table is scan's keep rule, animal against empty.
    assert "1 - P(empty) &gt;= threshold" in text and '<section id="thresholds">' in text
    # The most confident mistakes of each class that has any, with what they were taken for.
    wrong = [SPECIES3[i] for i, row in enumerate(m["confusion_matrix"]["matrix"]) if sum(row) > row[i]]
    for name in wrong:
        assert f"<h3>True class {html.escape(name)}:" in text
    assert "predicted " in text
    for src in image_sources(text):
        assert (facts.output / "report" / src).is_file(), src


def test_a_species_page_without_a_background_class_has_no_threshold_table(tmp_path):
    facts = make_species_facts(tmp_path, ("badger", "deer", "fox", "hare"))
    drawn = report_page.write_page(facts)
    text = (facts.output / "report" / "index.html").read_text(encoding="utf-8")
    assert "top-3 accuracy" in text  # 4 classes
    assert "no background class" in text and "<th>threshold</th>" not in text
    assert set(drawn) == {"confusion.png"}  # no curves without a history, no ROC/PR without a background


@pytest.fixture
def page(tmp_path):
    facts = make_facts(tmp_path)
    figures = report_page.write_page(facts)
    return facts, facts.output / "report" / "index.html", figures


def image_sources(text: str) -> list[str]:
    return re.findall(r'<img[^>]* src="([^"]+)"', text)


def test_the_page_shows_data_curves_metrics_thresholds_mistakes_and_the_run(page):
    facts, index, _ = page
    text = index.read_text(encoding="utf-8")
    for section in ("summary", "data", "training", "eval", "thresholds", "mistakes", "run"):
        assert f'<section id="{section}">' in text, section
    # Counts per class for each set, the skipped and ignored files with their reasons.
    assert "training: fitted on" in text and "training: validation" in text and ">eval<" in text
    assert "zero.jpg" in text and "empty file (0 bytes)" in text
    assert "notes.txt" in text and "not an image extension (.txt)" in text
    # Curves, confusion matrix, PR and ROC with their areas.
    assert {"curves.png", "confusion.png", "pr.png", "roc.png"} <= set(image_sources(text))
    assert f"{facts.metrics['roc_auc']:.3f}" in text and f"{facts.metrics['average_precision']:.3f}" in text
    # The threshold table marks 0.5 and 0.05, and the recommended threshold.
    for tag in ("default", "DeepMeerkat", "recall &gt;= 0.95", "best accuracy"):
        assert f'<span class="tag">{tag}</span>' in text, tag
    # Mistakes: two of each, with their paths and scores, thumbnails copied beside the page.
    thumbnails = [s for s in image_sources(text) if s.startswith("mistakes/")]
    assert sorted(thumbnails) == [
        "mistakes/fn-01.jpg",
        "mistakes/fn-02.jpg",
        "mistakes/fp-01.jpg",
        "mistakes/fp-02.jpg",
    ]
    assert "score 0.7000" in text and "score 0.1000" in text and "Testing/Negatives/n0.jpg" in text
    # The run: backbone, weights sha256, options, versions, timings.
    for fact in ("mobilenet_v2", "ab" * 32, "validation_fraction", "0123456789abcdef", "2.21.0", "1.5 s"):
        assert fact in text, fact


def test_the_page_stands_alone_on_disk(page):
    facts, index, figures = page
    text = index.read_text(encoding="utf-8")
    # Nothing from the network, no script; the browser is told so too.
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "<script" not in text
    assert "default-src 'none'" in text
    for src in image_sources(text):
        assert (index.parent / src).is_file(), src
    # The thumbnails are copies, small: the page outlives the crops.
    for thumb in (index.parent / "mistakes").glob("*.jpg"):
        assert max(cv2.imread(str(thumb)).shape[:2]) <= mistakes.THUMBNAIL
    # Every file is meerkat's (listed for the ownership rule), and the PNGs are the figures returned.
    owned = (index.parent / ownership.OWNED).read_text().split()
    assert {"index.html", "mistakes", *figures} <= set(owned)
    assert (index.parent / "pr.png").read_bytes() == figures["pr.png"]


@pytest.mark.slow
def test_a_crop_gone_since_training_gets_a_placeholder_not_a_broken_image(tmp_path):
    facts = make_facts(tmp_path)
    gone = facts.uris[facts.labels.tolist().index(1)]  # n0.jpg, the most confident false positive
    os.unlink(gone)
    report_page.write_page(facts)
    text = (facts.output / "report" / "index.html").read_text(encoding="utf-8")
    assert "not readable now" in text and "file not found" in text
    assert "mistakes/fp-01.jpg" not in text
    for src in image_sources(text):
        assert (facts.output / "report" / src).is_file(), src


@pytest.mark.slow
def test_a_rerun_replaces_its_own_figures_and_leaves_a_users_file(tmp_path):
    facts = make_facts(tmp_path)
    report_page.write_page(facts)
    (facts.output / "report" / "notes.md").write_text("mine")
    facts.history = None  # no curves this time: the old curves.png goes
    report_page.write_page(facts)
    assert not (facts.output / "report" / "curves.png").exists()
    assert (facts.output / "report" / "notes.md").read_text() == "mine"
    assert "No training curves" in (facts.output / "report" / "index.html").read_text()


@pytest.mark.slow
def test_matplotlib_works_without_a_writable_home(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME")}
    env["HOME"] = "/proc/nonexistent"  # what an arbitrary --user in a read-only container has
    code = (
        "import os; from meerkat.report.canvas import figure_class; F = figure_class(); "
        "from meerkat.report.canvas import png; png(F()); print(os.environ['MPLCONFIGDIR'])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(tempfile.gettempdir())
    assert "Matplotlib" not in proc.stderr, proc.stderr  # no "created a temporary cache directory" warning


# --- in a real browser ------------------------------------------------------------------------------

# Put ahead of the page's Content-Security-Policy (which then still forbids any script of the page's
# own): records every error event (a resource that failed to load, an uncaught exception), every CSP
# refusal and console.error, and, after load, each image's naturalWidth.
CHECKER = """<script>
(function () {
  const errors = [];
  const consoleError = console.error.bind(console);
  console.error = (...a) => { errors.push("console.error: " + a.join(" ")); consoleError(...a); };
  window.addEventListener("error", (e) => {
    const t = e.target;
    errors.push(t && t !== window ? "failed to load " + (t.currentSrc || t.src || t.href) : "uncaught: " + e.message);
  }, true);
  document.addEventListener("securitypolicyviolation", (e) =>
    errors.push("CSP refused " + e.blockedURI + " (" + e.violatedDirective + ")"));
  window.addEventListener("load", () => {
    const images = [...document.images].map((i) => ({src: i.getAttribute("src"), width: i.naturalWidth}));
    const out = document.createElement("pre");
    out.id = "meerkat-check";
    // Layout: a table wider than its section must sit in a scrolling box, and no cell's text may
    // stick out of its cell over its neighbours.
    const spills = [], unscrolled = [];
    for (const table of document.querySelectorAll("table")) {
      const section = table.closest("section").getBoundingClientRect();
      const box = table.parentElement;
      const scrolls = ["auto", "scroll"].includes(getComputedStyle(box).overflowX);
      if (table.getBoundingClientRect().right > section.right + 1 && !scrolls) unscrolled.push(table.className);
      for (const cell of table.querySelectorAll("th, td")) {
        const range = document.createRange();
        range.selectNodeContents(cell);
        const text = range.getBoundingClientRect(), own = cell.getBoundingClientRect();
        if (text.width && (text.left < own.left - 1 || text.right > own.right + 1 || text.top < own.top - 1 ||
            text.bottom > own.bottom + 1)) spills.push(cell.textContent);
      }
    }
    const layout = {pageWidth: document.documentElement.scrollWidth, viewWidth: window.innerWidth, spills, unscrolled};
    out.textContent = JSON.stringify({height: document.documentElement.scrollHeight, images, errors, layout});
    document.body.appendChild(out);
  });
})();
</script>"""


def chromium() -> str:
    exe = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if not exe:
        message = "chromium not found: `make chromium` installs Debian's package (apt-get install chromium, as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    return exe


def _browser(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000",
           *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def browser_check(index: Path, tmp_path: Path) -> dict:
    """Open `index` in headless Chromium: its images (naturalWidth), errors, console lines, height."""
    exe = chromium()
    text = index.read_text(encoding="utf-8")
    assert text.count("<head>") == 1
    checked = index.with_name(".browser-check.html")  # beside it: the same relative paths
    checked.write_text(text.replace("<head>", "<head>" + CHECKER), encoding="utf-8")
    try:
        args = ["--window-size=1280,900", "--enable-logging=stderr", "--v=0", "--dump-dom", checked.as_uri()]
        proc = _browser(exe, tmp_path / "profile", *args)
    finally:
        checked.unlink()
    found = re.search(r'<pre id="meerkat-check">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"the page did not finish loading in Chromium: {proc.stderr[-3000:]}"
    result = json.loads(html.unescape(found.group(1)))
    # Chromium logs what the page's console shows (CSP refusals, messages) as CONSOLE lines.
    result["console"] = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return result


def screenshot(index: Path, png: Path, height: int, tmp_path: Path) -> None:
    png.parent.mkdir(parents=True, exist_ok=True)
    height = max(800, min(height, 16000))
    proc = _browser(chromium(), tmp_path / "profile", f"--window-size=1280,{height}", f"--screenshot={png}",
                    index.as_uri())  # fmt: skip
    assert png.is_file() and png.stat().st_size > 10_000, proc.stderr[-2000:]


def assert_renders_cleanly(result: dict, expected_images: int) -> None:
    broken = [i["src"] for i in result["images"] if i["width"] <= 0]
    assert not broken, f"images that did not load: {broken}"
    assert len(result["images"]) == expected_images
    assert not result["errors"], result["errors"]
    assert not result["console"], result["console"]
    layout = result["layout"]
    assert layout["pageWidth"] <= layout["viewWidth"], "the page scrolls sideways: a table should scroll in its box"
    assert not layout["unscrolled"], f"tables wider than their section without a scroll box: {layout['unscrolled']}"
    assert not layout["spills"], f"text that sticks out of its cell: {layout['spills'][:5]}"


def test_the_page_renders_in_headless_chromium(page, tmp_path):
    _, index, _ = page
    result = browser_check(index, tmp_path)
    assert_renders_cleanly(result, expected_images=len(image_sources(index.read_text())))
    screenshot(index, BUILD / "metrics.png", result["height"], tmp_path)


def test_the_browser_check_catches_a_missing_image_a_console_error_and_a_network_load(page, tmp_path):
    _, index, _ = page
    (index.parent / "roc.png").unlink()
    text = index.read_text(encoding="utf-8")
    index.write_text(
        text.replace("</main>", '<img src="https://example.com/x.png"><script>console.error("boom")</script></main>'),
        encoding="utf-8",
    )
    result = browser_check(index, tmp_path)
    assert [i["src"] for i in result["images"] if i["width"] == 0] == ["roc.png", "https://example.com/x.png"]
    assert any("roc.png" in e for e in result["errors"])
    assert any("CSP refused https://example.com/x.png" in e for e in result["errors"])
    assert any("script-src" in e for e in result["errors"]), "the page's policy forbids its own scripts"
    assert result["console"], "Chromium's console lines are seen too"
    with pytest.raises(AssertionError, match="roc.png"):
        assert_renders_cleanly(result, len(result["images"]))


@pytest.mark.slow
def test_a_30_class_page_reads_well_in_headless_chromium(tmp_path):
    """30 classes: the matrix and the per-class table fit or scroll in their boxes, no text overlaps."""
    facts = make_species_facts(tmp_path, SPECIES30, per_class=2)
    report_page.write_page(facts)
    index = facts.output / "report" / "index.html"
    text = index.read_text(encoding="utf-8")
    assert re.search(r'<table class="matrix">.*?</table>', text, re.S).group(0).count("<tr>") == 31
    result = browser_check(index, tmp_path)
    assert_renders_cleanly(result, expected_images=len(image_sources(text)))
    screenshot(index, tmp_path / "report-30-classes.png", result["height"], tmp_path)
    # The confusion figure is drawn big enough for 30 names, not squeezed into the two-class size.
    width = int.from_bytes((index.parent / "confusion.png").read_bytes()[16:20], "big")
    assert width >= 1200


# --- a real run --------------------------------------------------------------------------------------


def test_a_run_writes_the_page_and_it_renders(tiny_run, tmp_path):
    index = tiny_run / "report" / "index.html"
    text = index.read_text(encoding="utf-8")
    assert "report/history.csv" in text  # the curves, from where training wrote them
    assert "curves.png" in text
    run = json.loads((tiny_run / "report" / "run.json").read_text())
    assert run["report_seconds"] > 0 and run["meerkat_revision"]
    assert run["model_sha256"] == sha256(tiny_run / "model" / "saved_model.pb")
    result = browser_check(index, tmp_path)
    assert_renders_cleanly(result, expected_images=len(image_sources(text)))
    screenshot(index, BUILD / "report-tiny-run.png", result["height"], tmp_path)


@pytest.mark.slow
def test_tensorboard_holds_the_pr_curve_confusion_matrix_and_mistakes_under_logs_eval(tmp_path):
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    facts = make_facts(tmp_path)
    figures = report_page.write_page(facts)
    logdir = facts.output / "logs" / "eval"
    summaries.write(facts, figures, logdir)
    summaries.write(facts, figures, logdir)  # a rerun replaces its own event file
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0, "images": 0}).Reload()
    tags = set(acc.Tags()["tensors"])
    assert {"pr_curve/pr_curves", "confusion_matrix", "mistakes", "roc_curve", "threshold_table"} <= tags, tags
    assert {"eval/roc_auc", "eval/average_precision"} <= tags, tags
    pr = acc.Tensors("pr_curve/pr_curves")[0]
    assert pr.step == 45  # the last training step
    data = tf.make_ndarray(pr.tensor_proto)
    assert data.shape == (6, 201)  # TP, FP, TN, FN, precision, recall at 201 thresholds
    assert data[0, 0] == 6 and data[1, 0] == 6  # at threshold 0 every crop is kept
    assert "pr_curve/pr_curves" in acc.PluginTagToContent("pr_curves")  # what TensorBoard's PR tab shows
    assert {"confusion_matrix", "roc_curve", "mistakes"} <= set(acc.PluginTagToContent("images"))
    for tag in ("confusion_matrix", "roc_curve", "mistakes"):  # [width, height, PNG], as the images tab reads it
        width, height, png = tf.make_ndarray(acc.Tensors(tag)[0].tensor_proto)
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[:2] == (int(height), int(width)), tag
    owned = (logdir / ownership.OWNED).read_text().split()
    assert all(p.name in owned for p in logdir.glob("events.out.tfevents.*"))
