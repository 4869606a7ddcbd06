"""The model card: OUTPUT/model/README.md for people, OUTPUT/model/meerkat.json for programs.

It says what the model classifies, its class order and input contract, what it was trained on,
the backbone and its weights, the eval metrics and threshold table, and the thresholds worth using:

- recommended: the highest threshold that keeps recall >= 0.95 on the eval set. DeepMeerkat is a
  filter in front of a person: an empty frame kept costs a reviewer a second, a missed animal is
  lost for good. So the card recommends the threshold that misses at most 1 in 20 of the eval
  positives, and keeps as few negatives as that allows;
- best accuracy: the threshold with the most eval crops right (ties: the one nearest 0.5).

Both are rounded to the fewest decimals that decide every eval crop the same way. Reading a card
(the threshold note of predict, clips and scan) is card.py's job.
"""

import json
import logging
import os
from pathlib import Path

from meerkat import __version__
from meerkat.apply.card import CARD_JSON
from meerkat.core import atomic

log = logging.getLogger(__name__)

CARD_README = "README.md"
CARD_FORMAT = 1
RECOMMENDED_SHORT = "recall >= {target:g}"


def build(facts, model_sha256: str) -> dict:
    """meerkat.json's content from report_page.Facts."""
    from meerkat.report import metrics
    from meerkat.report.page import TRAINING

    m, r = facts.metrics, facts.record
    names = facts.names
    thresholds = m.get("thresholds", {})
    recommended = thresholds.get("recall_target")
    train_counts = facts.counts.get(TRAINING, {})
    n_train, n_eval = sum(train_counts.values()), m["counts"]["total"]
    positives = m["counts"][names[0]]
    return {
        "card_format": CARD_FORMAT,
        "task": (
            f"Classifies a crop (a motion box cut from a camera-trap or wildlife video frame) as {names[0]} "
            f"(the animal of interest: the crops sorted into Samples/*/Positives) or {names[1]} "
            "(everything else the motion detector finds: leaves, shadows, water)."
        ),
        "classes": names,
        "positive_class": names[0],
        "input": {
            "signature": "serving_default",
            "image_bytes": "string [N]: encoded JPEG or PNG crops, any size",
            "decode": "RGB; grayscale and RGBA converted; first frame of a GIF",
            "resize": f"stretched to {facts.image_size or '?'} px square, bilinear, then the backbone's own "
            "normalisation (all inside the model)",
            "tf1_tensors": {"input": "Placeholder:0", "softmax": "final_ops/softmax:0"},
        },
        "output": {
            "scores": f"float32 [N, 2], the softmax; column 0 = P({names[0]})",
            "prediction": "int64 [N], index into dict.txt: the argmax of the float32 softmax. meerkat's own "
            "labels (predict, scan, the report) call a crop positive when score_positive, printed to 6 decimals, "
            "is >= the threshold; at 0.5 the two differ only for a score within 5e-7 of 0.5",
            "label": f"string [N], {names[0]} / {names[1]}",
            "dict_txt": names,
        },
        "model_sha256": model_sha256,
        "training_data": {
            "source": facts.source,
            "counts": facts.counts,
            "skipped_files": len(facts.skipped),
            "ignored_files": len(facts.ignored),
            "eval_held_out_from_training": _eval_held_out(facts),
        },
        "backbone": r.get("backbone", {}),
        "training": {
            "options": r.get("train_config", {}),
            **{k: r[k] for k in ("best_epoch", "stopped_epoch", "validation_fraction", "class_weights") if k in r},
        },
        "metrics": {
            "set": "eval",
            **{k: m.get(k) for k in ("accuracy", "precision", "recall", "false_positive_rate", "false_negative_rate")},
            "at_threshold": metrics.DEFAULT_THRESHOLD,
            "roc_auc": m.get("roc_auc"),
            "average_precision": m.get("average_precision"),
            "confusion_matrix": m.get("confusion_matrix"),
            "counts": m.get("counts"),
        },
        "thresholds": {
            "recommended": None
            if recommended is None
            else {
                **recommended,
                "short": RECOMMENDED_SHORT.format(target=metrics.RECALL_TARGET),
                "why": "DeepMeerkat filters frames for a person to review: a kept empty frame costs seconds, a "
                "missed animal is lost. This threshold misses at most 1 in 20 of the eval positives and keeps as "
                "few negatives as that allows.",
            },
            "best_accuracy": thresholds.get("best_accuracy"),
            "default": thresholds.get("default"),
            "deepmeerkat": thresholds.get("deepmeerkat"),
            "table": facts.evaluation["table"],
        },
        "intended_use": (
            f"Filtering motion crops from videos like the ones the training crops came from ({facts.source}): "
            "meerkat scan or DeepMeerkat keep the frames whose crops score at least the threshold, and a person "
            "reviews them. Not for counting, species identification or unattended decisions."
        ),
        "limits": _limits(facts, n_train, n_eval, positives),
        "meerkat": {"version": r.get("meerkat_version", __version__), "revision": r.get("meerkat_revision", "")},
        "versions": {k: r[k] for k in ("tensorflow_version", "python_version") if k in r},
    }


def _eval_held_out(facts) -> bool:
    """Whether the eval crops sit in the training crops' folder (no Testing folder: held out from Training)."""
    if not facts.training_source or not facts.uris:
        return False
    try:
        return Path(os.path.commonpath(facts.uris)).is_relative_to(facts.training_source)
    except ValueError:
        return False


def _limits(facts, n_train: int, n_eval: int, positives: int) -> list[str]:
    from meerkat.report.page import TRAINING

    names = facts.names
    counts = facts.counts.get(TRAINING, {})
    limits = [
        f"Trained on {n_train} crops ({counts.get(names[0], 0)} {names[0]}, {counts.get(names[1], 0)} {names[1]}) "
        f"from {facts.source or 'one Samples folder'}. It has seen only the cameras, sites, seasons, light and "
        "species in them: check it on a labelled sample before trusting it, or its thresholds, on other footage.",
        f"The metrics and thresholds come from {n_eval} eval crops with {positives} {names[0]}: one {names[0]} "
        f"is {1 / max(positives, 1):.1%} of recall, so 'recall >= 0.95' is an estimate on those crops, not a "
        "guarantee.",
        f"'{names[0]}' means 'like the {names[0]} training crops'; the {names[1]} crops define what it rejects. "
        "Anything unlike both (a new species, night footage if it saw none) gets an unpredictable score.",
        "It expects crops cut by motion detection as DeepMeerkat and `meerkat clips` cut them, not whole frames.",
        "score_positive ranks crops; it is not a calibrated probability.",
    ]
    if _eval_held_out(facts):
        limits.insert(
            2,
            "The eval crops were held out from the Training folder (there was no Testing folder): they come from "
            "the same videos as the training crops, so the metrics are optimistic for new videos.",
        )
    return limits


def render(card: dict) -> str:
    """README.md from meerkat.json's content."""
    names = card["classes"]
    m, t = card["metrics"], card["thresholds"]
    rec, best = t.get("recommended"), t.get("best_accuracy")
    b = card["backbone"]

    def num(x, digits=3):
        return "n/a" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)

    lines = [
        f"# Model card: meerkat {names[0]}/{names[1]} crop classifier",
        "",
        card["task"],
        "",
    ]
    if rec:
        lines += [
            f"**Recommended threshold: `--threshold {rec['threshold']:g}`** ({rec['rule']} on the eval set: "
            f"recall {num(rec['recall'])}, precision {num(rec['precision'])}, false-positive rate "
            f"{num(rec['false_positive_rate'])}, keeps {num(rec['kept_fraction'])} of the crops). {rec['why']}",
            "",
        ]
    if best:
        lines += [
            f"Best accuracy: `--threshold {best['threshold']:g}` (accuracy {num(best['accuracy'])}, recall "
            f"{num(best['recall'])}, precision {num(best['precision'])}). meerkat's default is 0.5; DeepMeerkat's "
            "operating point was 0.05.",
            "",
        ]
    lines += [
        "## Classes and input contract",
        "",
        f"- Class order (`dict.txt`): {', '.join(f'{i} = `{n}`' for i, n in enumerate(names))}. "
        f"**Column 0 of `scores` is P({names[0]})**; a crop is {names[0]} when `scores[:, 0] >= threshold`.",
        f"- Input: `{card['input']['image_bytes']}` (signature `serving_default`; DeepMeerkat's TF1 loader feeds "
        "`Placeholder:0` and reads `final_ops/softmax:0`).",
        f"- Decoding: {card['input']['decode']}; {card['input']['resize']}.",
        f"- Outputs: `scores` {card['output']['scores']}; `prediction` {card['output']['prediction']}; "
        f"`label` {card['output']['label']}.",
        f"- `saved_model.pb` sha256: `{card['model_sha256']}`",
        "",
        "## Training data",
        "",
        f"From `{card['training_data']['source']}`.",
        "",
        "| set | " + " | ".join(names) + " | total |",
        "|---|" + "---:|" * (len(names) + 1),
    ]
    for split, counts in card["training_data"]["counts"].items():
        lines.append(
            f"| {split} | " + " | ".join(str(counts.get(n, 0)) for n in names) + f" | {sum(counts.values())} |"
        )
    lines += [
        "",
        f"Skipped (unreadable) files: {card['training_data']['skipped_files']}; ignored (not images): "
        f"{card['training_data']['ignored_files']}. The report lists them with their reasons.",
        "",
        "## Backbone",
        "",
        f"- `{b.get('name', '?')}`"
        + (f", alpha {b['alpha']}" if b.get("alpha") else "")
        + f", {b.get('precision', '')}",
        f"- Weights: `{b.get('weights', '')}`",
        f"- Weights sha256: `{b.get('weights_sha256') or 'none (random weights)'}`",
        "",
        f"## Eval metrics ({m['counts']['total']} crops of the Testing set, threshold 0.5)",
        "",
        "| accuracy | precision | recall | false-positive rate | ROC AUC | average precision |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {num(m['accuracy'])} | {num(m['precision'])} | {num(m['recall'])} | {num(m['false_positive_rate'])} "
        f"| {num(m['roc_auc'])} | {num(m['average_precision'])} |",
        "",
        "Confusion matrix (rows: true, columns: predicted): "
        + "; ".join(
            f"{names[i]}: " + ", ".join(f"{c} {names[j]}" for j, c in enumerate(row))
            for i, row in enumerate(m["confusion_matrix"]["matrix"])
        )
        + ".",
        "",
        "## Threshold table (eval set)",
        "",
        "| threshold | precision | recall | false-positive rate | crops kept | accuracy | |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in t["table"]:
        lines.append(
            f"| {row['threshold']:g} | {num(row['precision'])} | {num(row['recall'])} | "
            f"{num(row['false_positive_rate'])} | {num(row['kept_fraction'])} | {num(row['accuracy'])} | "
            f"{row['note']} |"
        )
    lines += ["", "## Intended use", "", card["intended_use"], "", "## Limits", ""]
    lines += [f"- {limit}" for limit in card["limits"]]
    lines += [
        "",
        "## Provenance",
        "",
        f"- meerkat {card['meerkat']['version']}, revision `{card['meerkat']['revision'] or 'unknown'}`",
        *(f"- {k.replace('_version', '')}: {v}" for k, v in card["versions"].items()),
        f"- Training options: `{json.dumps(card['training']['options'], sort_keys=True)}`",
        *(f"- {k.replace('_', ' ')}: {v}" for k, v in card["training"].items() if k != "options"),
        "",
        "The same facts for programs: `meerkat.json` beside this file. The full report: `../report/index.html`.",
        "",
    ]
    return "\n".join(lines)


def write(facts, model_dir) -> dict:
    """model/meerkat.json and model/README.md (after the export: the SavedModel is already there)."""
    from meerkat.embed.weights import sha256

    model_dir = Path(model_dir)
    card = build(facts, sha256(model_dir / "saved_model.pb"))
    atomic.write_text(model_dir / CARD_JSON, json.dumps(card, indent=2) + "\n")
    atomic.write_text(model_dir / CARD_README, render(card))
    return card
