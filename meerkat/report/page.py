"""OUTPUT/report/index.html: one static page with its figures and the mistakes' thumbnails beside it.

It opens from disk, loads nothing from the network (a Content-Security-Policy says so to the
browser too) and needs no JavaScript. It shows the data (counts per class, skipped and ignored
files with their reasons), the training curves, the confusion matrix, the precision-recall and
ROC curves, the threshold table, the most confident mistakes, and the run's backbone, weights,
options, versions and timings. Its style is page.css, shipped with the package.

For species (any classes but DeepMeerkat's pair) it shows the N x N matrix as a table too (counts
and shares of each row), precision, recall, F1 and support per class, macro-F1 and top-1/top-3
accuracy, the curves and thresholds of animal against background (none without a background
class) and the most confident mistakes of each class. Wide tables scroll in their own box, so
30 classes read as well as 2.

Everything is written with core.atomic, so each file appears whole and only meerkat's files are replaced.
"""

import html
import json
import platform
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import numpy as np

from meerkat import __version__
from meerkat.core import atomic, ownership
from meerkat.report import figures, metrics, mistakes, splits
from meerkat.report.facts import HISTORY, Facts
from meerkat.report.facts import number as _num

LISTED_FILES = 200  # skipped or ignored files listed on the page; the files beside the shards list all

# No network, no script: images and styles from beside the page only.
CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'"


def _e(value) -> str:
    """Escaped for HTML; a name's bytes that are not UTF-8 shown as \\xNN (the page stays UTF-8)."""
    return html.escape(atomic.shown(str(value)), quote=True)


def _table(head: list[str], rows: list[list], numeric: set[int] = frozenset(), classes=None, css: str = "") -> str:
    out = [f'<table class="{css}"><thead><tr>' if css else "<table><thead><tr>"]
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
    if facts.classes.is_pair:
        cards = [
            ("eval crops", f"{m['counts']['total']}", f"{m['counts'][facts.names[0]]} {facts.names[0]}, "
             f"{m['counts'][facts.names[1]]} {facts.names[1]}", ""),
            ("accuracy at 0.5", _num(m["accuracy"], 3),
             f"precision {_num(m['precision'], 3)}, recall {_num(m['recall'], 3)}", ""),
            ("ROC AUC", _num(m.get("roc_auc"), 3), f"average precision {_num(m.get('average_precision'), 3)}", ""),
        ]  # fmt: skip
    else:
        top3 = f"top-{metrics.TOP_K} accuracy {_num(m[f'top{metrics.TOP_K}'], 3)}" if "top3" in m else ""
        cards = [
            ("eval crops", f"{m['counts']['total']}", f"{len(facts.names)} classes", ""),
            ("top-1 accuracy", _num(m["top1"], 3), top3, ""),
            ("macro-F1", _num(m["macro_f1"], 3), "the mean F1 of the classes", ""),
        ]
        if "roc_auc" in m:
            cards.append(("ROC AUC, animal vs background", _num(m["roc_auc"], 3),
                          f"average precision {_num(m['average_precision'], 3)}", ""))  # fmt: skip
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
    if facts.classes.is_pair:
        rows = [
            [_e(split), *(_e(c[n]) for n in names), _e(sum(c.values()))] for split, c in facts.counts.items()
        ]  # fmt: skip
        counts = _table(["set", *names, "total"], rows, numeric={1, 2, 3})
    else:  # a row a class: 30 classes stay a readable table
        sets = list(facts.counts.values())
        rows = [[_e(n), *(_e(c[n]) for c in sets)] for n in names] + [["total", *(_e(sum(c.values())) for c in sets)]]
        counts = f'<div class="wide">{_table(["class", *facts.counts], rows, set(range(1, len(sets) + 1)))}</div>'

    extra = []
    for key, label in (("validation_fraction", "validation fraction"), ("class_weights", "class weights")):
        if facts.run.get(key) is not None:
            extra.append(f"{label}: <code>{_e(facts.run[key])}</code>")
    extra_html = f'<p class="note">{"; ".join(extra)}</p>' if extra else ""
    extra_html += "".join(f'<p class="note">{_e(line)}</p>' for line in splits.sentences(facts.run))
    skipped = _files_table(facts.skipped, ["set", "file", "reason"], "the *.skipped.csv files beside the shards")
    ignored = _files_table([(p, r) for p, r in facts.ignored], ["file", "reason"], "docs/ignored.txt")
    source = f'<p class="note">Crops from <code>{_e(facts.source)}</code>.</p>' if facts.source else ""
    return (
        f'<section id="data"><h2>Data</h2>{source}<h3>Crops per class</h3>{counts}{extra_html}'
        f"<h3>Skipped files ({len(facts.skipped)})</h3>"
        '<p class="note">Image files that could not be read or decoded; they are in no set.</p>'
        f"{skipped}<h3>Ignored files ({len(facts.ignored)})</h3>"
        '<p class="note">Files in Samples that are not images by their name, and links that leave their class '
        "folder.</p>"
        f"{ignored}</section>"
    )


def _training_section(facts: Facts, drawn: dict) -> str:
    notes = []
    r = facts.run
    if r.get("best_epoch") is not None:
        notes.append(f"exported epoch (lowest validation loss): <b>{_e(r['best_epoch'])}</b>")
    if r.get("stopped_epoch") is not None:
        notes.append(f"stopped after epoch <b>{_e(r['stopped_epoch'])}</b>")
    if facts.history is not None:
        notes.append(f"from {HISTORY}")
    note = f'<p class="note">{"; ".join(notes)}.</p>' if notes else ""
    if "curves.png" in drawn:
        body = _img("curves.png", "loss and accuracy per epoch")
    else:
        body = f'<p class="muted">No training curves were found ({HISTORY}).</p>'
    return f'<section id="training"><h2>Training curves</h2>{note}{body}</section>'


def _species_matrix(m: dict) -> str:
    """The N x N matrix: each cell its count and its share of the row (the true class), shaded by it."""
    names, matrix = m["confusion_matrix"]["labels"], m["confusion_matrix"]["matrix"]
    head = "".join(f'<th class="v"><span>{_e(n)}</span></th>' for n in names)
    body = []
    for i, (name, row) in enumerate(zip(names, matrix, strict=True)):
        cells = []
        for j, count in enumerate(row):
            share = count / sum(row) if sum(row) else None
            shade = f' style="background:rgba(36,113,163,{0.85 * share:.2f})"' if share else ""
            # d: the diagonal; dark: white text on a dark cell; z: a zero, faint, so the counts stand out
            css = (" d" if i == j else "") + (" dark" if share and share > 0.6 else "" if count else " z")
            cells.append(f'<td class="n{css}"{shade}><b>{count}</b><br>'
                         f"<small>{'–' if share is None else f'{share:.0%}'}</small></td>")  # fmt: skip
        body.append(f'<tr><th scope="row">{_e(name)}</th>{"".join(cells)}</tr>')
    return (
        f'<div class="wide"><table class="matrix"><thead><tr><th>true \\ predicted</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _species_eval_section(facts: Facts, drawn: dict) -> str:
    m = facts.metrics
    rows = [
        [_e(n), f["support"], _num(f["precision"], 3), _num(f["recall"], 3), _num(f["f1"], 3)]
        for n, f in m["per_class"].items()
    ]
    rows.append(["<b>macro-F1</b>", m["counts"]["total"], "", "", f"<b>{_num(m['macro_f1'], 3)}</b>"])
    per_class = _table(["class", "support", "precision", "recall", "F1"], rows, {1, 2, 3, 4}, css="per-class")
    top3 = f", top-{metrics.TOP_K} accuracy {_num(m['top3'], 3)}" if "top3" in m else ""
    confusion = _img("confusion.png", "confusion matrix")
    big = len(facts.names) > 10  # a big matrix's figure gets the section's width, a small one a column
    figs = [] if big else [confusion]
    if "roc.png" in drawn:
        figs += [
            _img("pr.png", "precision-recall curve", "Animal against background; AP is the area under the curve."),
            _img("roc.png", "ROC curve", "Marked: 0.5 (default), 0.05 (DeepMeerkat), the recommended threshold."),
        ]
    return (
        '<section id="eval"><h2>Eval set</h2>'
        f'<p class="note">The Testing set ({m["counts"]["total"]} crops), scored once by the exported model. '
        f"A crop's predicted class is its top score: top-1 accuracy {_num(m['top1'], 3)}{top3}, "
        f"macro-F1 {_num(m['macro_f1'], 3)} (the mean F1 of the classes).</p>"
        f'<h3>Per class</h3><div class="wide">{per_class}</div>'
        "<h3>Confusion matrix (rows: true class, columns: predicted; each cell's share of its row)</h3>"
        f'{_species_matrix(m)}{confusion if big else ""}<div class="figs">{"".join(figs)}</div>'
        "</section>"
    )


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
    if facts.evaluation is None:
        return (
            '<section id="thresholds"><h2>Thresholds</h2><p class="muted">These classes have no background class '
            "(none named like empty, blank, background or negative), so there is no threshold to choose: a crop's "
            "class is its top score.</p></section>"
        )
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
    if facts.classes.is_pair:
        what, background = "", "P(negative)"
    else:
        background = metrics.background_scores(facts.classes)
        what = (f"Animals (every class but the background) against background: a crop is kept when "
                f"{_e(metrics.keep_rule(facts.classes))}, scan's rule. ")  # fmt: skip
    return (
        '<section id="thresholds"><h2>Thresholds</h2>'
        f'<p class="note">{what}For each threshold on the eval set: precision, recall, the false-positive rate '
        "(negatives kept / negatives) and the fraction of crops kept (how much a reviewer would look through). "
        f"0.5 is meerkat's default, 0.05 is DeepMeerkat's operating point (keep unless {_e(background)} &gt; 0.95); "
        f"the green row is the highest threshold that keeps recall ≥ {metrics.RECALL_TARGET:g}, which the model "
        "card recommends. All rows are in <code>thresholds.csv</code>.</p>"
        f"{table if facts.classes.is_pair else f'<div class=wide>{table}</div>'}</section>"
    )


def _thumb(m: mistakes.Mistake, facts: Facts, score: str) -> str:
    if m.thumbnail:
        picture = f'<img src="mistakes/{quote(m.thumbnail)}" alt="{_e(Path(m.uri).name)}">'
    else:
        picture = f'<div class="missing">not readable now:<br>{_e(m.problem)}</div>'
    return (
        f'<div class="thumb">{picture}<div class="score">{score}</div>'
        f'<div class="path" title="{_e(m.uri)}">{_e(_relative(m.uri, facts.source))}</div></div>'
    )


def _species_mistakes_section(facts: Facts) -> str:
    parts, right = [], []
    for name in facts.names:
        mine = [m for m in facts.mistakes if m.kind == name]
        if not mine:
            right.append(name)
            continue
        parts.append(f"<h3>True class {_e(name)}: taken for another ({len(mine)} shown)</h3>")
        cells = [_thumb(m, facts, f"predicted {_e(m.predicted)} {m.score:.4f}") for m in mine]
        parts.append(f'<div class="sheet">{"".join(cells)}</div>')
    if right:
        parts.append(f'<p class="muted">No mistakes: {_e(", ".join(right))}.</p>')
    root = f" Paths are relative to <code>{_e(facts.source)}</code>." if facts.source else ""
    return (
        '<section id="mistakes"><h2>Most confident mistakes</h2>'
        f'<p class="note">For each class, up to {mistakes.MISTAKES_PER_CLASS} of its crops whose top score went to '
        "another class, the most confident first; the score is that other class's. The thumbnails are copies in "
        f"report/mistakes/.{root}</p>" + "".join(parts) + "</section>"
    )


def _mistakes_section(facts: Facts) -> str:
    if not facts.classes.is_pair:
        return _species_mistakes_section(facts)
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
        cells = [_thumb(m, facts, f"score {m.score:.4f}") for m in mine]
        parts.append(f'<div class="sheet">{"".join(cells)}</div>')
    root = f" Paths are relative to <code>{_e(facts.source)}</code>." if facts.source else ""
    return (
        '<section id="mistakes"><h2>Most confident mistakes</h2>'
        f'<p class="note">At threshold 0.5, up to {mistakes.MISTAKES_SHOWN} of each; the score is P(positive). The '
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
    return value if isinstance(value, str) else json.dumps(value)


def _run_section(facts: Facts) -> str:
    r = facts.run
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


def render(facts: Facts, drawn: dict) -> str:
    title = f"meerkat report: {facts.output.name or facts.output}"
    sections = [
        _summary_section(facts),
        _data_section(facts),
        _training_section(facts, drawn),
        _eval_section(facts) if facts.classes.is_pair else _species_eval_section(facts, drawn),
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
        f"<title>{_e(title)}</title><style>\n{_css()}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p>{_e(facts.output)} · meerkat {_e(__version__)} · "
        f'model card: <a style="color:#fff" href="../model/README.md">model/README.md</a></p></header>'
        f"<nav>{nav}</nav><main>{''.join(sections)}</main>"
        "<footer>metrics.json, thresholds.csv, predictions.csv and run.json beside this page hold the numbers."
        "</footer></body></html>\n"
    )


def _css() -> str:
    return resources.files(__package__).joinpath("page.css").read_text(encoding="utf-8")


def write_page(facts: Facts) -> dict[str, bytes]:
    """report/index.html with its figures and the mistakes' thumbnails; picks facts.mistakes, and
    returns the figures (PNG bytes by name)."""
    report_dir = facts.output / "report"
    if facts.classes.is_pair:
        facts.mistakes = mistakes.pick(facts.evaluation, facts.uris)
    else:
        facts.mistakes = mistakes.pick_species(facts.labels, facts.probabilities, facts.classes, facts.uris)
    mistakes.write_thumbnails(report_dir, facts.mistakes)
    drawn = figures.draw(facts)
    for name in figures.FIGURES:
        if name in drawn:
            with atomic.atomic_open(report_dir / name, "wb") as f:
                f.write(drawn[name])
        elif (report_dir / name).exists():
            ownership.remove(report_dir / name, "an earlier report's figure")
    atomic.write_text(report_dir / "index.html", render(facts, drawn))  # last: its images are there
    return drawn
