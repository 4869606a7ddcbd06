"""OUTPUT/report/index.html, its figures, and the same figures in TensorBoard (logs/eval).

The page is one static HTML file with its PNGs and the mistakes' thumbnails beside it in report/:
it opens from disk, loads nothing from the network (a Content-Security-Policy says so to the
browser too) and needs no JavaScript. It shows the data (counts per class, skipped and ignored
files with their reasons), the training curves, the confusion matrix, the precision-recall and
ROC curves, the threshold table, the most confident mistakes, and the run's backbone, weights,
options, versions and timings.

The plots are drawn with matplotlib's Agg canvas, without pyplot (no global state, no display).
Everything is written with core.atomic, so each file appears whole and only meerkat's files are replaced.
"""

import html
import io
import logging
import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from meerkat import __version__
from meerkat.core import atomic, ownership
from meerkat.core.settings import IMAGE_EXTENSIONS
from meerkat.embed import tfrecords
from meerkat.report import metrics
from meerkat.samples.imagefiles import Unreadable, for_model, read_bytes

log = logging.getLogger(__name__)

MISTAKES_SHOWN = 12  # of each kind
THUMBNAIL = 200  # px, the longer side
LISTED_FILES = 200  # skipped or ignored files listed on the page; the files beside the shards list all
FIGURES = ("curves.png", "confusion.png", "pr.png", "roc.png")
REPORT_EVENTS_SUFFIX = ".meerkat-report"  # this module's TensorBoard event file in logs/eval
POSITIVE_COLOUR, NEGATIVE_COLOUR = "#c0392b", "#2471a3"
SPLIT_COLOURS = {"train": "#2471a3", "validation": "#d35400", "eval": "#27ae60"}
# The rows of the counts table (and of the card's).
TRAINING, FITTED, VALIDATION, EVAL = "training (all)", "training: fitted on", "training: validation", "eval"


@dataclass
class Mistake:
    kind: str  # "false positive" or "false negative"
    uri: str
    score: float
    thumbnail: str | None = None  # the file name under report/mistakes/, None when unreadable
    image: np.ndarray | None = None  # RGB, for the TensorBoard sheet
    problem: str = ""


@dataclass
class Facts:
    """Everything the page, the TensorBoard summaries and the model card show about a finished run."""

    output: Path
    names: list[str]
    uris: list[str]
    labels: np.ndarray  # eval, 0 = positive
    metrics: dict  # metrics.json
    evaluation: dict  # metrics.evaluate_thresholds
    counts: dict[str, dict[str, int]]  # set -> class -> crops
    record: dict  # what run.json holds, but the fingerprint
    source: str  # the folder the crops came from
    training_source: str  # the folder the training crops came from
    image_size: int | None = None  # the backbone's square input
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (set, path, reason)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    history: pd.DataFrame | None = None
    history_source: str = ""
    mistakes: list[Mistake] = field(default_factory=list)

    @property
    def best_epoch(self):
        return self.record.get("best_epoch")


def _counts(labels: np.ndarray, names: list[str]) -> dict[str, int]:
    return {name: int((np.asarray(labels) == i).sum()) for i, name in enumerate(names)}


def _class_counts(value, names) -> dict[str, int] | None:
    """{positive: n, negative: m} from a run.json value, if it is one."""
    if isinstance(value, dict) and set(names) <= set(value) and all(isinstance(value[n], int) for n in names):
        return {n: value[n] for n in names}
    return None


def split_counts(record: dict, train_labels, eval_labels, names) -> dict[str, dict[str, int]]:
    """Crops per class: the training records (and their training and validation parts, when
    run.json has them) and the eval set."""
    counts = {TRAINING: _counts(train_labels, names)}
    parts = {}
    for key, value in record.items():  # e.g. "train_counts", "validation_counts", or {"train": {...}, ...}
        found = _class_counts(value, names)
        if found and key.endswith("_counts"):
            parts[key.removesuffix("_counts")] = found
        elif isinstance(value, dict) and key in ("counts", "class_counts", "split_counts"):
            for part, sub in value.items():
                if _class_counts(sub, names):
                    parts[part] = _class_counts(sub, names)
    for part, label in (("train", FITTED), ("training", FITTED), ("validation", VALIDATION)):
        if part in parts:
            counts[label] = parts[part]
    counts[EVAL] = _counts(eval_labels, names)
    return counts


def _skipped(pattern: str, what: str) -> list[tuple[str, str, str]]:
    rows = []
    try:
        shards, _ = tfrecords.find_shards(pattern)
    except Exception:  # the pattern was readable a moment ago; a page without this list is still a page
        return rows
    for shard in shards:
        path = tfrecords.skipped_path(shard)
        if path.is_file():
            table = pd.read_csv(path, keep_default_na=False, dtype=str)
            rows += [(what, p, r) for p, r in zip(table["path"], table["reason"], strict=True)]
    return rows


def ignored_reason(path: str) -> str:
    """Why createdocs passed over a file (imagefiles.list_images' rules, in its order)."""
    name = Path(path).name
    if name.startswith("._"):
        return "macOS resource fork (._ file)"
    if name.startswith("."):
        return "hidden file"
    suffix = Path(name).suffix
    if suffix.lower() not in IMAGE_EXTENSIONS:
        return f"not an image extension ({suffix})" if suffix else "no extension"
    return "not a file (a dangling link)"


def _ignored(manifest: dict) -> list[tuple[str, str]]:
    """docs/ignored.txt beside the CSV the training records were made from."""
    source = manifest.get("source_csv")
    path = Path(source).parent / "ignored.txt" if source else None
    if not path or not path.is_file():
        return []
    return [(p, ignored_reason(p)) for p in path.read_text(encoding="utf-8").splitlines() if p]


def _history(output: Path) -> tuple[pd.DataFrame | None, str]:
    """Loss and accuracy per epoch: report/history.csv when training wrote it, else the scalars in the
    TensorBoard logs (per step)."""
    csv = output / "report" / "history.csv"
    if csv.is_file():
        try:
            return pd.read_csv(csv), "report/history.csv"
        except (OSError, ValueError) as e:
            log.warning("warning: cannot read %s (%s); the page shows no training curves", csv, e)
            return None, ""
    logs = output / "logs"
    if not logs.is_dir():
        return None, ""
    import tensorflow as tf

    columns: dict[str, dict[int, float]] = {}
    for split in sorted(p for p in logs.iterdir() if p.is_dir()):
        for events in sorted(split.glob("events.out.tfevents.*")):
            if events.name.endswith(REPORT_EVENTS_SUFFIX):
                continue
            try:
                for event in tf.compat.v1.train.summary_iterator(str(events)):
                    for value in event.summary.value:
                        if value.tag in ("loss", "accuracy"):
                            number = tf.make_ndarray(value.tensor) if value.HasField("tensor") else value.simple_value
                            columns.setdefault(f"{split.name}_{value.tag}", {})[event.step] = float(number)
            except Exception as e:  # a truncated event file: show what was read
                log.debug("reading %s: %s", events, e)
    if not columns:
        return None, ""
    frame = pd.DataFrame(columns).sort_index().rename_axis("step").reset_index()
    return frame, "the TensorBoard logs (logs/)"


def _common(paths: list[str]) -> str:
    try:
        return os.path.commonpath(paths) if paths else ""
    except ValueError:  # relative and absolute paths mixed
        return ""


def gather(cfg, record: dict, train_set, eval_set, scores) -> Facts:
    """The facts about a run (cfg: its RecordsConfig) that has just written metrics.json."""
    import json

    output, names = Path(cfg.output_dir), list(train_set.manifest["labels"])
    metrics = json.loads((output / "report" / "metrics.json").read_text(encoding="utf-8"))
    uris = list(eval_set.uris)
    source, training_source = _common([*train_set.uris, *uris]), _common(train_set.uris)
    history, history_source = _history(output)
    return Facts(
        output=output,
        names=list(names),
        uris=uris,
        labels=np.asarray(eval_set.labels),
        metrics=metrics,
        evaluation=metrics.evaluate_thresholds(eval_set.labels, scores),
        counts=split_counts(record, train_set.labels, eval_set.labels, names),
        record=record,
        source=source,
        training_source=training_source,
        image_size=train_set.manifest.get("image_size"),
        skipped=_skipped(str(cfg.train_data), "training") + _skipped(str(cfg.eval_data), "eval"),
        ignored=_ignored(train_set.manifest),
        history=history,
        history_source=history_source,
    )


# --- figures -------------------------------------------------------------------------------------


def _matplotlib():
    """matplotlib's Figure, drawing on Agg; its config and font cache in a writable folder (a
    read-only container under any uid has no writable home)."""
    if "MPLCONFIGDIR" not in os.environ:
        try:
            default = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "matplotlib"
            default.mkdir(parents=True, exist_ok=True)
            writable = os.access(default, os.W_OK)
        except (OSError, RuntimeError):  # RuntimeError: no HOME and no passwd entry
            writable = False
        if not writable:
            # One per uid, so the font cache is built once; a folder someone else made is not used.
            folder = Path(tempfile.gettempdir()) / f"meerkat-matplotlib-{os.getuid()}"
            try:
                folder.mkdir(mode=0o700, exist_ok=True)
                if folder.stat().st_uid != os.getuid() or not os.access(folder, os.W_OK):
                    raise PermissionError(folder)
            except OSError:
                folder = Path(tempfile.mkdtemp(prefix="meerkat-matplotlib-"))
            os.environ["MPLCONFIGDIR"] = str(folder)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure


def _png(fig, dpi: int = 150) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _style(ax) -> None:
    ax.grid(True, color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def curves_figure(facts: Facts) -> bytes | None:
    h = facts.history
    if h is None or h.empty:
        return None
    x = "epoch" if "epoch" in h.columns else "step"
    Figure = _matplotlib()
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for column in [c for c in h.columns if c.endswith(f"_{metric}")]:
            split = column.removesuffix(f"_{metric}")
            data = h[[x, column]].dropna()
            ax.plot(data[x], data[column], marker="o", markersize=3, label=split, color=SPLIT_COLOURS.get(split))
        if x == "epoch" and facts.best_epoch is not None:
            ax.axvline(facts.best_epoch, color="#7f8c8d", linestyle="--", linewidth=1, label="exported epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per {x}")
        if metric == "accuracy":
            ax.set_ylim(min(0.5, ax.get_ylim()[0]), 1.01)
        _style(ax)
        ax.legend(frameon=False)
    return _png(fig)


def confusion_figure(facts: Facts) -> bytes:
    matrix = np.array(facts.metrics["confusion_matrix"]["matrix"])
    Figure = _matplotlib()
    fig = Figure(figsize=(4.2, 3.9), layout="constrained")
    ax = fig.subplots()
    rows = matrix.sum(1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, f"{count}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=13,
                color="white" if share[i, j] > 0.6 else "#1a1a1a")  # fmt: skip
    ax.set_xticks([0, 1], facts.names)
    ax.set_yticks([0, 1], facts.names)
    ax.set_xlabel("predicted (threshold 0.5)")
    ax.set_ylabel("true label")
    ax.set_title("confusion matrix, eval set")
    return _png(fig)


def _marked(facts: Facts) -> list[tuple[float, str, str]]:
    """The thresholds marked on the curves: (threshold, label, marker)."""
    marks = [
        (metrics.DEFAULT_THRESHOLD, "0.5 (default)", "o"),
        (metrics.DEEPMEERKAT_THRESHOLD, "0.05 (DeepMeerkat)", "s"),
    ]
    recall_t = facts.evaluation["recall_threshold"]
    if recall_t is not None:
        marks.append((recall_t, f"{recall_t:g} (recall >= {metrics.RECALL_TARGET:g})", "D"))
    return marks


def pr_figure(facts: Facts) -> bytes:
    ev = facts.evaluation
    pr = ev["pr"]
    Figure = _matplotlib()
    fig = Figure(figsize=(4.2, 3.9), layout="constrained")
    ax = fig.subplots()
    ap = pr["average_precision"]
    recall, precision = np.r_[0.0, pr["recall"]], np.r_[1.0, pr["precision"]]
    ax.step(recall, precision, where="pre", color=POSITIVE_COLOUR, label=f"AP = {ap:.3f}" if ap is not None else "")
    base = facts.metrics["counts"][facts.names[0]] / max(1, facts.metrics["counts"]["total"])
    ax.axhline(base, color="#aaaaaa", linestyle=":", linewidth=1, label=f"chance ({base:.2f})")
    for t, label, marker in _marked(facts):
        row = metrics.at_threshold(ev["is_positive"], ev["scores"], t)
        if row["precision"] is not None and row["recall"] is not None:
            ax.plot(row["recall"], row["precision"], marker=marker, color="#1a1a1a", linestyle="none", label=label)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("precision-recall, eval set")
    _style(ax)
    ax.legend(frameon=False, loc="lower left")
    return _png(fig)


def roc_figure(facts: Facts) -> bytes:
    ev = facts.evaluation
    roc = ev["roc"]
    Figure = _matplotlib()
    fig = Figure(figsize=(4.2, 3.9), layout="constrained")
    ax = fig.subplots()
    auc = roc["auc"]
    ax.plot(roc["fpr"], roc["tpr"], color=POSITIVE_COLOUR, label=f"AUC = {auc:.3f}" if auc is not None else "")
    ax.plot([0, 1], [0, 1], color="#aaaaaa", linestyle=":", linewidth=1, label="chance")
    for t, label, marker in _marked(facts):
        row = metrics.at_threshold(ev["is_positive"], ev["scores"], t)
        if row["false_positive_rate"] is not None and row["recall"] is not None:
            ax.plot(row["false_positive_rate"], row["recall"], marker=marker, color="#1a1a1a", linestyle="none",
                    label=label)  # fmt: skip
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate (recall)")
    ax.set_title("ROC, eval set")
    _style(ax)
    ax.legend(frameon=False, loc="lower right")
    return _png(fig)


def mistakes_sheet(facts: Facts) -> np.ndarray | None:
    """A contact sheet of the mistakes as an RGB array, for TensorBoard (the page lays out the
    thumbnails itself): the thumbnails tiled, placed unscaled (figimage), with their names and
    scores. One axes per thumbnail, or a resampled imshow, would take a second or more."""
    if not facts.mistakes:
        return None
    columns, cell, caption, heading = 6, THUMBNAIL + 8, 34, 30
    kinds = [(k, [m for m in facts.mistakes if m.kind == k]) for k in ("false positive", "false negative")]
    rows = [max(1, -(-len(mine) // columns)) for _, mine in kinds]
    height, width = sum(heading + r * (cell + caption) for r in rows), columns * cell
    sheet = np.full((height, width, 3), 255, np.uint8)
    texts, top = [], 0  # (x, y from the top, text, size)
    for (kind, mine), n_rows in zip(kinds, rows, strict=True):
        texts.append((4, top + heading / 2, f"{kind}s: {len(mine)} most confident" if mine else f"no {kind}s", 11))
        top += heading
        for i, m in enumerate(mine):
            x, y = (i % columns) * cell, top + (i // columns) * (cell + caption)
            sheet[y + 4 : y + cell - 4, x + 4 : x + cell - 4] = 238
            if m.image is not None:
                h, w = m.image.shape[:2]
                oy, ox = y + 4 + (THUMBNAIL - h) // 2, x + 4 + (THUMBNAIL - w) // 2
                sheet[oy : oy + h, ox : ox + w] = m.image
            else:
                texts.append((x + cell / 2 - 30, y + cell / 2, "unreadable", 9))
            texts.append((x + 6, y + cell + caption / 2, f"{_short(m.uri, 26)}\n{m.score:.4f}", 8))
        top += n_rows * (cell + caption)
    Figure = _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    fig.figimage(sheet, origin="upper")
    for x, y, text, size in texts:
        fig.text(x / width, 1 - y / height, text, fontsize=size, va="center", ha="left", linespacing=1.2)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _short(text: str, width: int) -> str:
    name = Path(text).name
    return name if len(name) <= width else "…" + name[-(width - 1) :]


# --- mistakes ------------------------------------------------------------------------------------


def pick_mistakes(facts: Facts, threshold: float = metrics.DEFAULT_THRESHOLD) -> list[Mistake]:
    """The negatives scored highest and the positives scored lowest, on the wrong side of threshold."""
    s, is_pos = facts.evaluation["scores"], facts.evaluation["is_positive"]
    fp = [i for i in np.argsort(-s, kind="stable") if not is_pos[i] and s[i] >= threshold][:MISTAKES_SHOWN]
    fn = [i for i in np.argsort(s, kind="stable") if is_pos[i] and s[i] < threshold][:MISTAKES_SHOWN]
    return [Mistake("false positive", facts.uris[i], float(s[i])) for i in fp] + [
        Mistake("false negative", facts.uris[i], float(s[i])) for i in fn
    ]


def _thumbnail(uri: str) -> np.ndarray:
    """The crop as RGB, its longer side at most THUMBNAIL px; raises Unreadable."""
    import cv2

    data = for_model(read_bytes(uri))
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:  # a GIF, say: what preprocess decoded with TensorFlow
        import tensorflow as tf

        try:
            image = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()[..., ::-1]
        except tf.errors.OpError as e:
            raise Unreadable(f"cannot decode: {e.message.splitlines()[0]}") from None
    h, w = image.shape[:2]
    scale = min(1.0, THUMBNAIL / max(h, w))
    if scale < 1:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image[..., ::-1])


def write_thumbnails(report_dir: Path, mistakes: list[Mistake]) -> None:
    """report/mistakes/: copies of the mistaken crops, small, so the page outlives the crops' folder."""
    import cv2

    with atomic.atomic_dir(report_dir / "mistakes", "the report's thumbnails") as tmp:
        numbers: dict[str, int] = {}
        for m in mistakes:
            numbers[m.kind] = numbers.get(m.kind, 0) + 1  # fp-01, fp-02, ..., fn-01, ...: by rank in its kind
            try:
                m.image = _thumbnail(m.uri)
            except (Unreadable, OSError) as e:
                m.problem = str(e)
                continue
            ok, jpeg = cv2.imencode(".jpg", m.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 88])
            if not ok:
                m.problem = "cannot encode its thumbnail"
                continue
            m.thumbnail = f"{'fp' if m.kind == 'false positive' else 'fn'}-{numbers[m.kind]:02d}.jpg"
            (tmp / m.thumbnail).write_bytes(jpeg.tobytes())


# --- the page ------------------------------------------------------------------------------------

CSS = """
:root { --ink:#1d2733; --muted:#5c6b7a; --line:#dfe4ea; --bg:#f6f7f9; --card:#fff; --accent:#c0392b;
        --mark:#fff4d6; --rec:#e4f4ea; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:#1d2733; color:#fff; padding:22px 32px 18px; }
header h1 { margin:0 0 4px; font-size:24px; font-weight:600; }
header p { margin:0; color:#c9d3dd; font-size:13px; word-break:break-all; }
nav { background:#fff; border-bottom:1px solid var(--line); padding:8px 32px; position:sticky; top:0; z-index:1; }
nav a { color:var(--muted); text-decoration:none; margin-right:18px; font-size:13px; }
nav a:hover { color:var(--ink); }
main { max-width:1180px; margin:0 auto; padding:8px 32px 40px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:18px 22px;
          margin:18px 0; }
h2 { margin:0 0 12px; font-size:18px; }
h3 { margin:16px 0 8px; font-size:15px; }
p.note, .muted { color:var(--muted); font-size:13px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(170px,1fr)); gap:12px; }
.card { border:1px solid var(--line); border-radius:6px; padding:10px 14px; }
.card .v { font-size:24px; font-weight:600; }
.card .k { color:var(--muted); font-size:12px; }
.card.rec { background:var(--rec); border-color:#b7dfc4; }
table { border-collapse:collapse; font-size:13px; }
th, td { padding:5px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { background:#f0f2f5; font-weight:600; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; }
tr.mark td { background:var(--mark); }
tr.rec td { background:var(--rec); }
.tag { display:inline-block; font-size:11px; padding:0 6px; border-radius:9px; background:#e8ebef;
       margin-right:4px; white-space:nowrap; }
.figs { display:grid; grid-template-columns:repeat(auto-fit,minmax(330px,1fr)); gap:16px; align-items:start; }
.two { display:grid; grid-template-columns:repeat(auto-fit,minmax(420px,1fr)); gap:16px; align-items:start; }
figure { margin:0; }
figure img { max-width:100%; height:auto; display:block; }
figcaption { color:var(--muted); font-size:12px; margin-top:4px; }
.sheet { display:grid; grid-template-columns:repeat(auto-fill,minmax(170px,1fr)); gap:12px; }
.thumb { border:1px solid var(--line); border-radius:6px; padding:6px; background:#fafbfc; }
.thumb img { width:100%; height:150px; object-fit:contain; background:#eef0f3; display:block; }
.thumb .missing { height:150px; display:flex; align-items:center; justify-content:center; text-align:center;
                  background:#eef0f3; color:var(--muted); font-size:12px; padding:6px; }
.thumb .score { font-weight:600; font-variant-numeric:tabular-nums; }
.thumb .path { font-size:11px; color:var(--muted); word-break:break-all; }
.scroll { max-height:320px; overflow:auto; border:1px solid var(--line); border-radius:6px; }
.scroll table { width:100%; }
.path { word-break:break-all; }
code, .mono { font-family:ui-monospace,"DejaVu Sans Mono",monospace; font-size:12px; }
dl.kv { display:grid; grid-template-columns:max-content 1fr; gap:4px 16px; margin:0; font-size:13px; }
dl.kv dt { color:var(--muted); }
dl.kv dd { margin:0; word-break:break-all; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:10px; }
"""

# No network, no script: images and styles from beside the page only.
CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'"


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _num(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(head: list[str], rows: list[list], numeric: set[int] = frozenset(), classes=None) -> str:
    out = ["<table><thead><tr>"]
    out += [f'<th class="n">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for r, row in enumerate(rows):
        cls = f' class="{classes[r]}"' if classes and classes[r] else ""
        cells = [f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row)]
        out.append(f"<tr{cls}>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _img(name: str, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{quote(name)}" alt="{_e(alt)}">{cap}</figure>'


def _summary_section(facts: Facts) -> str:
    m = facts.metrics
    t = m.get("thresholds", {})
    rec, best = t.get("recall_target"), t.get("best_accuracy")
    cards = [
        ("eval crops", f"{m['counts']['total']}", f"{m['counts'][facts.names[0]]} {facts.names[0]}, "
         f"{m['counts'][facts.names[1]]} {facts.names[1]}", ""),
        ("accuracy at 0.5", _num(m["accuracy"], 3),
         f"precision {_num(m['precision'], 3)}, recall {_num(m['recall'], 3)}", ""),
        ("ROC AUC", _num(m.get("roc_auc"), 3), f"average precision {_num(m.get('average_precision'), 3)}", ""),
    ]  # fmt: skip
    if rec:
        cards.append(
            (
                f"recommended threshold (recall ≥ {metrics.RECALL_TARGET:g})",
                f"{rec['threshold']:g}",
                f"recall {_num(rec['recall'], 3)}, FPR {_num(rec['false_positive_rate'], 3)}, "
                f"keeps {_num(rec['kept_fraction'], 3)}",
                "rec",
            )
        )
    if best:
        cards.append(("best-accuracy threshold", f"{best['threshold']:g}", f"accuracy {_num(best['accuracy'], 3)}", ""))
    html_cards = "".join(
        f'<div class="card {cls}"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div>'
        f'<div class="k">{_e(sub)}</div></div>'
        for k, v, sub, cls in cards
    )
    return f'<section id="summary"><h2>Summary</h2><div class="cards">{html_cards}</div></section>'


def _files_table(rows: list[tuple], head: list[str], listed_in: str) -> str:
    if not rows:
        return '<p class="muted">None.</p>'
    shown = rows[:LISTED_FILES]
    body = _table(head, [[_e(c) for c in r] for r in shown])
    more = ""
    if len(rows) > len(shown):
        more = f'<p class="note">… and {len(rows) - len(shown)} more, listed in {_e(listed_in)}.</p>'
    return f'<div class="scroll">{body}</div>{more}'


def _data_section(facts: Facts) -> str:
    names = facts.names
    rows = [
        [_e(split), *(_e(c[n]) for n in names), _e(sum(c.values()))] for split, c in facts.counts.items()
    ]  # fmt: skip
    counts = _table(["set", *names, "total"], rows, numeric={1, 2, 3})
    extra = []
    for key, label in (("validation_fraction", "validation fraction"), ("class_weights", "class weights")):
        if facts.record.get(key) is not None:
            extra.append(f"{label}: <code>{_e(facts.record[key])}</code>")
    extra_html = f'<p class="note">{"; ".join(extra)}</p>' if extra else ""
    skipped = _files_table(facts.skipped, ["set", "file", "reason"], "the *.skipped.csv files beside the shards")
    ignored = _files_table([(p, r) for p, r in facts.ignored], ["file", "reason"], "docs/ignored.txt")
    source = f'<p class="note">Crops from <code>{_e(facts.source)}</code>.</p>' if facts.source else ""
    return (
        f'<section id="data"><h2>Data</h2>{source}<h3>Crops per class</h3>{counts}{extra_html}'
        f"<h3>Skipped files ({len(facts.skipped)})</h3>"
        '<p class="note">Image files that could not be read or decoded; they are in no set.</p>'
        f"{skipped}<h3>Ignored files ({len(facts.ignored)})</h3>"
        '<p class="note">Files in Samples that are not images by their name.</p>'
        f"{ignored}</section>"
    )


def _training_section(facts: Facts, figures: dict) -> str:
    notes = []
    r = facts.record
    if r.get("best_epoch") is not None:
        notes.append(f"exported epoch (lowest validation loss): <b>{_e(r['best_epoch'])}</b>")
    if r.get("stopped_epoch") is not None:
        notes.append(f"stopped after epoch <b>{_e(r['stopped_epoch'])}</b>")
    if facts.history_source:
        notes.append(f"from {_e(facts.history_source)}")
    note = f'<p class="note">{"; ".join(notes)}.</p>' if notes else ""
    if "curves.png" in figures:
        body = _img("curves.png", "loss and accuracy per epoch")
    else:
        body = '<p class="muted">No training curves were found (report/history.csv or logs/).</p>'
    return f'<section id="training"><h2>Training curves</h2>{note}{body}</section>'


def _eval_section(facts: Facts) -> str:
    m = facts.metrics
    (tp, fn), (fp, tn) = m["confusion_matrix"]["matrix"]
    p, n = facts.names
    matrix = _table(
        ["true \\ predicted", p, n],
        [[_e(p), _e(tp), _e(fn)], [_e(n), _e(fp), _e(tn)]],
        numeric={1, 2},
    )
    figs = "".join(
        [
            f"<div>{_img('confusion.png', 'confusion matrix')}{matrix}</div>",
            _img("pr.png", "precision-recall curve", "Step-wise precision-recall; AP is the area under it."),
            _img("roc.png", "ROC curve", "Marked: 0.5 (default), 0.05 (DeepMeerkat), the recommended threshold."),
        ]
    )
    return (
        '<section id="eval"><h2>Eval set</h2>'
        f'<p class="note">The Testing set ({m["counts"]["total"]} crops), scored once by the exported model. '
        "A crop is called positive when its score_positive is at least the threshold.</p>"
        f'<div class="figs">{figs}</div></section>'
    )


def _thresholds_section(facts: Facts) -> str:
    head = ["threshold", "precision", "recall", "false-positive rate", "crops kept", "accuracy", "TP", "FP", "FN", "TN",
            ""]  # fmt: skip
    rows, classes = [], []
    for r in facts.evaluation["table"]:
        tags = "".join(f'<span class="tag">{_e(t)}</span>' for t in r["note"].split("; ") if t)
        rows.append(
            [
                f"<b>{r['threshold']:g}</b>" if r["note"] else f"{r['threshold']:g}",
                _num(r["precision"], 3),
                _num(r["recall"], 3),
                _num(r["false_positive_rate"], 3),
                _num(r["kept_fraction"], 3),
                _num(r["accuracy"], 3),
                r["true_positives"],
                r["false_positives"],
                r["false_negatives"],
                r["true_negatives"],
                tags,
            ]
        )
        classes.append("rec" if "recall >=" in r["note"] else "mark" if r["note"] else "")
    table = _table(head, rows, numeric=set(range(1, 10)), classes=classes)
    return (
        '<section id="thresholds"><h2>Thresholds</h2>'
        '<p class="note">For each threshold on the eval set: precision, recall, the false-positive rate '
        "(negatives kept / negatives) and the fraction of crops kept (how much a reviewer would look through). "
        "0.5 is meerkat's default, 0.05 is DeepMeerkat's operating point (keep unless P(negative) &gt; 0.95); "
        f"the green row is the highest threshold that keeps recall ≥ {metrics.RECALL_TARGET:g}, which the model "
        "card recommends. All rows are in <code>thresholds.csv</code>.</p>"
        f"{table}</section>"
    )


def _mistakes_section(facts: Facts) -> str:
    parts = []
    for kind, what in (
        ("false positive", "negatives with the highest scores"),
        ("false negative", "positives with the lowest scores"),
    ):
        mine = [m for m in facts.mistakes if m.kind == kind]
        parts.append(f"<h3>{kind.capitalize()}s: {what} ({len(mine)} shown)</h3>")
        if not mine:
            parts.append('<p class="muted">None at threshold 0.5.</p>')
            continue
        cells = []
        for m in mine:
            if m.thumbnail:
                picture = f'<img src="mistakes/{quote(m.thumbnail)}" alt="{_e(Path(m.uri).name)}">'
            else:
                picture = f'<div class="missing">not readable now:<br>{_e(m.problem)}</div>'
            cells.append(
                f'<div class="thumb">{picture}<div class="score">score {m.score:.4f}</div>'
                f'<div class="path" title="{_e(m.uri)}">{_e(_relative(m.uri, facts.source))}</div></div>'
            )
        parts.append(f'<div class="sheet">{"".join(cells)}</div>')
    root = f" Paths are relative to <code>{_e(facts.source)}</code>." if facts.source else ""
    return (
        '<section id="mistakes"><h2>Most confident mistakes</h2>'
        f'<p class="note">At threshold 0.5, up to {MISTAKES_SHOWN} of each; the score is P(positive). The '
        f"thumbnails are copies in report/mistakes/.{root}</p>" + "".join(parts) + "</section>"
    )


def _relative(path: str, root: str) -> str:
    try:
        return str(Path(path).relative_to(root)) if root else path
    except ValueError:
        return path


def _kv(pairs: list[tuple[str, object]]) -> str:
    return (
        '<dl class="kv">'
        + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in pairs if v is not None and v != "")
        + "</dl>"
    )


def _shown(value) -> str:
    """A run.json value as run.json writes it (null, {"positive": 5, ...}), a string as it is."""
    import json

    return value if isinstance(value, str) else json.dumps(value)


def _run_section(facts: Facts) -> str:
    r = facts.record
    b = r.get("backbone", {})
    backbone = _kv(
        [
            ("backbone", _e(b.get("name", "?")) + (f", alpha {_e(b['alpha'])}" if b.get("alpha") else "")),
            ("precision", _e(b.get("precision", ""))),
            ("weights", f'<span class="mono">{_e(b.get("weights", ""))}</span>'),
            ("weights sha256", f'<span class="mono">{_e(b.get("weights_sha256") or "none")}</span>'),
            ("model sha256", f'<span class="mono">{_e(r["model_sha256"])}</span>' if r.get("model_sha256") else ""),
        ]
    )
    options = _kv([(k, f"<code>{_e(_shown(v))}</code>") for k, v in (r.get("train_config") or {}).items()])
    versions = _kv(
        [
            ("meerkat", _e(r.get("meerkat_version", __version__))),
            ("revision", f'<span class="mono">{_e(r.get("meerkat_revision", "unknown"))}</span>'),
            ("TensorFlow", _e(r.get("tensorflow_version", ""))),
            ("Python", _e(r.get("python_version", platform.python_version()))),
            ("numpy", _e(np.__version__)),
        ]
    )
    known = {"backbone", "train_config", "meerkat_version", "meerkat_revision", "tensorflow_version",
             "python_version", "model_sha256"}  # fmt: skip
    timings = [(TIMINGS.get(k, k), _e(f"{v} s")) for k, v in r.items() if k.endswith("_seconds")]
    options_given = r.get("train_config") or {}
    other = [
        (k, f"<code>{_e(_shown(v))}</code>")
        for k, v in r.items()
        if k not in known and not k.endswith("_seconds") and not (k in options_given and options_given[k] == v)
    ]  # e.g. best_epoch, the counts, the data's paths
    return (
        '<section id="run"><h2>Run</h2><div class="two">'
        f"<div><h3>Backbone and weights</h3>{backbone}<h3>Versions</h3>{versions}"
        f"<h3>Timings</h3>{_kv(timings) if timings else '<p class=muted>n/a</p>'}</div>"
        f"<div><h3>Training options</h3>{options}<h3>Other</h3>{_kv(other)}</div>"
        "</div></section>"
    )


TIMINGS = {"train_seconds": "loading, training, export and eval", "report_seconds": "this report"}


def render(facts: Facts, figures: dict) -> str:
    title = f"meerkat report: {facts.output.name or facts.output}"
    sections = [
        _summary_section(facts),
        _data_section(facts),
        _training_section(facts, figures),
        _eval_section(facts),
        _thresholds_section(facts),
        _mistakes_section(facts),
        _run_section(facts),
    ]
    nav = "".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("summary", "Summary"),
            ("data", "Data"),
            ("training", "Training"),
            ("eval", "Eval"),
            ("thresholds", "Thresholds"),
            ("mistakes", "Mistakes"),
            ("run", "Run"),
        )
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p>{_e(facts.output)} · meerkat {_e(__version__)} · "
        f'model card: <a style="color:#fff" href="../model/README.md">model/README.md</a></p></header>'
        f"<nav>{nav}</nav><main>{''.join(sections)}</main>"
        "<footer>metrics.json, thresholds.csv, predictions.csv and run.json beside this page hold the numbers."
        "</footer></body></html>\n"
    )


def figures_of(facts: Facts) -> dict[str, bytes]:
    drawn = {
        "curves.png": curves_figure(facts),
        "confusion.png": confusion_figure(facts),
        "pr.png": pr_figure(facts),
        "roc.png": roc_figure(facts),
    }
    return {name: png for name, png in drawn.items() if png is not None}


def write_page(facts: Facts) -> dict[str, bytes]:
    """report/index.html with its figures and thumbnails; returns the figures (PNG bytes by name)."""
    report_dir = facts.output / "report"
    facts.mistakes = pick_mistakes(facts)
    write_thumbnails(report_dir, facts.mistakes)
    figures = figures_of(facts)
    for name in FIGURES:
        if name in figures:
            with atomic.atomic_open(report_dir / name, "wb") as f:
                f.write(figures[name])
        elif (report_dir / name).exists():
            ownership.remove(report_dir / name, "an earlier report's figure")
    atomic.write_text(report_dir / "index.html", render(facts, figures))  # last: its images are there
    return figures


# --- TensorBoard ---------------------------------------------------------------------------------


def write_tensorboard(facts: Facts, figures: dict[str, bytes], logdir: Path) -> None:
    """logs/eval: a PR curve, the AUCs, the threshold table, and the confusion matrix, ROC and
    mistakes sheet as images, in an event file of their own (replaced by each finished run)."""
    import tensorflow as tf
    from tensorboard.plugins.pr_curve import summary as pr_summary

    folder = atomic.ensure_dir(logdir)
    for old in sorted(folder.glob(f"events.out.tfevents.*{REPORT_EVENTS_SUFFIX}")):
        ownership.remove(old, "an earlier report's TensorBoard summaries")
    step = _last_step(facts)
    ev = facts.evaluation
    sheet = mistakes_sheet(facts)
    before = set(folder.iterdir())
    writer = tf.summary.create_file_writer(str(folder), filename_suffix=REPORT_EVENTS_SUFFIX)
    ownership.claim_growing(*(set(folder.iterdir()) - before))
    with writer.as_default(step=step):
        pb = pr_summary.pb(
            "pr_curve",
            labels=ev["is_positive"],
            predictions=np.clip(ev["scores"], 0, 1),
            num_thresholds=201,
            display_name="precision-recall (eval set)",
            description=f"Positive class: {facts.names[0]}; AP {_num(facts.metrics.get('average_precision'))}.",
        )
        tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=step)
        for key in ("roc_auc", "average_precision"):
            if facts.metrics.get(key) is not None:
                tf.summary.scalar(f"eval/{key}", facts.metrics[key])
        for name, tag in (("confusion.png", "confusion_matrix"), ("roc.png", "roc_curve")):
            if name in figures:
                _png_summary(tag, figures[name], f"report/{name}")
        if sheet is not None:
            import cv2

            ok, png = cv2.imencode(".png", sheet[..., ::-1])
            if ok:
                _png_summary("mistakes", png.tobytes(), "the most confident mistakes at threshold 0.5")
        tf.summary.text("threshold_table", _markdown_table(facts.evaluation["table"]))
    writer.close()


def _png_summary(tag: str, png: bytes, description: str) -> None:
    """An image summary of a PNG as it is (tf.summary.image would decode and encode it again)."""
    import tensorflow as tf
    from tensorboard.plugins.image import metadata

    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # the IHDR chunk
    tf.summary.write(
        tag=tag,
        tensor=tf.constant([str(width).encode(), str(height).encode(), png]),
        metadata=metadata.create_summary_metadata(display_name=None, description=description),
    )


def _last_step(facts: Facts) -> int:
    h = facts.history
    if h is not None and not h.empty and "step" in h.columns:
        return int(h["step"].max())
    return 0


def _markdown_table(rows: list[dict]) -> str:
    head = "| threshold | precision | recall | FPR | kept | accuracy | note |\n|---|---|---|---|---|---|---|\n"
    return head + "".join(
        f"| {r['threshold']:g} | {_num(r['precision'], 3)} | {_num(r['recall'], 3)} | "
        f"{_num(r['false_positive_rate'], 3)} | {_num(r['kept_fraction'], 3)} | {_num(r['accuracy'], 3)} | "
        f"{r['note']} |\n"
        for r in rows
    )
