"""The model card: OUTPUT/model/README.md for people, OUTPUT/model/meerkat.json for programs.

It says what the model classifies, its class order and input contract, what it was trained on,
the backbone and its weights, the eval metrics and threshold table, and the thresholds worth using:

- recommended: the highest threshold that keeps recall >= 0.95 on the eval set. DeepMeerkat is a
  filter in front of a person: an empty frame kept costs a reviewer a second, a missed animal is
  lost for good. So the card recommends the threshold that misses at most 1 in 20 of the eval
  positives, and keeps as few negatives as that allows;
- best accuracy: the threshold with the most eval crops right (ties: the one nearest 0.5).

Both are rounded to the fewest decimals that decide every eval crop the same way. Reading a card
(the threshold note of predict, clips and scan) is apply/card.py's job.

For species (any classes but DeepMeerkat's pair) the card lists each class with its counts,
precision, recall and F1, gives top-1 (top-3) accuracy and macro-F1, and its thresholds are scan's
keep rule, 1 - P(background) >= threshold, chosen as above for animals against background; with
no background class there is no threshold to recommend.
"""

import json
import os
from pathlib import Path

from meerkat import __version__
from meerkat.apply.card import CARD_JSON
from meerkat.core import atomic
from meerkat.report import metrics, splits
from meerkat.report.facts import TRAINING, Facts, number

CARD_README = "README.md"
CARD_FORMAT = 1
RECOMMENDED_SHORT = "recall >= {target:g}"


def write(facts: Facts, model_dir) -> dict:
    """model/meerkat.json and model/README.md (after the export: the SavedModel is already there)."""
    from meerkat.embed.weights import sha256

    model_dir = Path(model_dir)
    card = build(facts, sha256(model_dir / "saved_model.pb"))
    atomic.write_text(model_dir / CARD_JSON, json.dumps(card, indent=2) + "\n")
    atomic.write_text(model_dir / CARD_README, atomic.shown(render(card)))  # JSON escapes such a name's bytes
    return card


# --- meerkat.json ------------------------------------------------------------------------------------


def build(facts: Facts, model_sha256: str) -> dict:
    """meerkat.json's content."""
    if not facts.classes.is_pair:
        return _species_build(facts, model_sha256)
    names, run = facts.names, facts.run
    return {
        "card_format": CARD_FORMAT,
        "task": _task(names),
        "classes": names,
        "positive_class": names[0],
        "input": _input(facts.image_size),
        "output": _output(names),
        "model_sha256": model_sha256,
        "training_data": _training_data(facts),
        "backbone": run.get("backbone", {}),
        "training": _training(run),
        "metrics": _metrics(facts.metrics),
        "thresholds": _thresholds(facts.metrics.get("thresholds", {}), facts.evaluation["table"]),
        "intended_use": (
            f"Filtering motion crops from videos like the ones the training crops came from ({facts.source}): "
            "meerkat scan or DeepMeerkat keep the frames whose crops score at least the threshold, and a person "
            "reviews them. Not for counting, species identification or unattended decisions."
        ),
        "limits": _limits(facts),
        "meerkat": {"version": run.get("meerkat_version", __version__), "revision": run.get("meerkat_revision", "")},
        "versions": {k: run[k] for k in ("tensorflow_version", "python_version") if k in run},
    }


def _species_build(facts: Facts, model_sha256: str) -> dict:
    names, run, m, classes = facts.names, facts.run, facts.metrics, facts.classes
    background = [n for n in names if n in classes.background]
    keys = ("top1", "top3", "macro_f1", "per_class", "confusion_matrix", "counts", "roc_auc", "average_precision")
    thresholds = {"kept_when": None, "recommended": None}
    if facts.evaluation is not None:
        thresholds = {"kept_when": m["kept_when"], **_thresholds(m["thresholds"], facts.evaluation["table"])}
    return {
        "card_format": CARD_FORMAT,
        "task": (
            f"Classifies a crop (a motion box cut from a camera-trap or wildlife video frame) as one of "
            f"{len(names)} classes: {', '.join(names)}."
            + (f" Background (no animal): {', '.join(background)}." if background else "")
        ),
        "classes": names,
        "background_classes": background,
        "input": _input(facts.image_size),
        "output": {
            "scores": f"float32 [N, {len(names)}], the softmax; column i = P(class i of dict.txt)",
            "prediction": "int64 [N], index into dict.txt: the argmax of the softmax, the report's predicted class",
            "label": "string [N], the predicted class's name",
            "dict_txt": names,
        },
        "model_sha256": model_sha256,
        "training_data": _training_data(facts),
        "backbone": run.get("backbone", {}),
        "training": _training(run),
        "metrics": {"set": "eval", **{k: m[k] for k in keys if k in m}},
        "thresholds": thresholds,
        "intended_use": (
            f"Sorting motion crops from videos like the ones the training crops came from ({facts.source}) into "
            "these classes for a person to review; meerkat scan keeps the crops whose 1 - P(background) reaches "
            "the threshold. Not for counting or unattended decisions."
        ),
        "limits": _species_limits(facts),
        "meerkat": {"version": run.get("meerkat_version", __version__), "revision": run.get("meerkat_revision", "")},
        "versions": {k: run[k] for k in ("tensorflow_version", "python_version") if k in run},
    }


def _species_limits(facts: Facts) -> list[str]:
    counts, support = facts.counts.get(TRAINING, {}), facts.metrics["per_class"]
    fewest = min(facts.names, key=lambda n: (support[n]["support"], n))
    limits = [
        f"Trained on {sum(counts.values())} crops of {len(facts.names)} classes from "
        f"{facts.source or 'one Samples folder'}. It has seen only the cameras, sites, seasons, light and animals in "
        "them: check it on a labelled sample before trusting it on other footage.",
        f"The metrics come from {facts.metrics['counts']['total']} eval crops; the rarest class, {fewest}, has "
        f"{support[fewest]['support']}: its precision, recall and F1 are rough estimates.",
        "An animal of none of these classes gets the scores of whichever it looks most like.",
        "It expects crops cut by motion detection as DeepMeerkat and `meerkat clips` cut them, not whole frames.",
        "The scores rank crops; they are not calibrated probabilities.",
    ]
    return _with_held_out(facts, limits)


def _task(names: list[str]) -> str:
    return (
        f"Classifies a crop (a motion box cut from a camera-trap or wildlife video frame) as {names[0]} "
        f"(the animal of interest: the crops sorted into Samples/*/Positives) or {names[1]} "
        "(everything else the motion detector finds: leaves, shadows, water)."
    )


def _input(image_size: int | None) -> dict:
    return {
        "signature": "serving_default",
        "image_bytes": "string [N]: encoded JPEG or PNG crops, any size",
        "decode": "RGB; grayscale and RGBA converted; first frame of a GIF",
        "resize": f"stretched to {image_size or '?'} px square, bilinear, then the backbone's own "
        "normalisation (all inside the model)",
        "tf1_tensors": {"input": "Placeholder:0", "softmax": "final_ops/softmax:0"},
    }


def _output(names: list[str]) -> dict:
    return {
        "scores": f"float32 [N, 2], the softmax; column 0 = P({names[0]})",
        "prediction": "int64 [N], index into dict.txt: the argmax of the float32 softmax. meerkat's own "
        "labels (predict, scan, the report) call a crop positive when score_positive, printed to 6 decimals, "
        "is >= the threshold; at 0.5 the two differ only for a score within 5e-7 of 0.5",
        "label": f"string [N], {names[0]} / {names[1]}",
        "dict_txt": names,
    }


def _training_data(facts: Facts) -> dict:
    return {
        "source": facts.source,
        "counts": facts.counts,
        "skipped_files": len(facts.skipped),
        "ignored_files": len(facts.ignored),
        "eval_held_out_from_training": _eval_held_out(facts),
    }


def _training(run: dict) -> dict:
    return {
        "options": run.get("train_config", {}),
        **{k: run[k] for k in ("best_epoch", "stopped_epoch", "validation_fraction", "class_weights") if k in run},
        **(
            {"split_grouping": run["split_grouping"], "splits": splits.sentences(run)}
            if "split_grouping" in run
            else {}
        ),
    }


def _metrics(m: dict) -> dict:
    return {
        "set": "eval",
        **{k: m.get(k) for k in ("accuracy", "precision", "recall", "false_positive_rate", "false_negative_rate")},
        "at_threshold": metrics.DEFAULT_THRESHOLD,
        "roc_auc": m.get("roc_auc"),
        "average_precision": m.get("average_precision"),
        "confusion_matrix": m.get("confusion_matrix"),
        "counts": m.get("counts"),
    }


def _thresholds(thresholds: dict, table: list[dict]) -> dict:
    """The recommended, best-accuracy, default and DeepMeerkat thresholds (metrics.json's), and the table."""
    recommended = thresholds.get("recall_target")
    if recommended is not None:
        recommended = {
            **recommended,
            "short": RECOMMENDED_SHORT.format(target=metrics.RECALL_TARGET),
            "why": "DeepMeerkat filters frames for a person to review: a kept empty frame costs seconds, a "
            "missed animal is lost. This threshold misses at most 1 in 20 of the eval positives and keeps as "
            "few negatives as that allows.",
        }
    return {
        "recommended": recommended,
        "best_accuracy": thresholds.get("best_accuracy"),
        "default": thresholds.get("default"),
        "deepmeerkat": thresholds.get("deepmeerkat"),
        "table": table,
    }


def _with_held_out(facts: Facts, limits: list[str]) -> list[str]:
    """`limits` with, third, the warning that the eval crops share videos with the training crops."""
    if _eval_held_out(facts) and not splits.leak_free(facts.run):
        limits.insert(
            2,
            "The eval crops were held out from the Training folder (there was no Testing folder): they come from "
            "the same videos as the training crops, so the metrics are optimistic for new videos.",
        )
    return limits


def _eval_held_out(facts: Facts) -> bool:
    """Whether the eval crops sit in the training crops' folder (no Testing folder: held out from Training)."""
    if not facts.training_source or not facts.uris:
        return False
    try:
        return Path(os.path.commonpath(facts.uris)).is_relative_to(facts.training_source)
    except ValueError:
        return False


def _limits(facts: Facts) -> list[str]:
    names, counts = facts.names, facts.counts.get(TRAINING, {})
    n_eval, positives = facts.metrics["counts"]["total"], facts.metrics["counts"][names[0]]
    limits = [
        f"Trained on {sum(counts.values())} crops ({counts.get(names[0], 0)} {names[0]}, "
        f"{counts.get(names[1], 0)} {names[1]}) from {facts.source or 'one Samples folder'}. It has seen only the "
        "cameras, sites, seasons, light and species in them: check it on a labelled sample before trusting it, or "
        "its thresholds, on other footage.",
        f"The metrics and thresholds come from {n_eval} eval crops with {positives} {names[0]}: one {names[0]} "
        f"is {1 / max(positives, 1):.1%} of recall, so 'recall >= 0.95' is an estimate on those crops, not a "
        "guarantee.",
        f"'{names[0]}' means 'like the {names[0]} training crops'; the {names[1]} crops define what it rejects. "
        "Anything unlike both (a new species, night footage if it saw none) gets an unpredictable score.",
        "It expects crops cut by motion detection as DeepMeerkat and `meerkat clips` cut them, not whole frames.",
        "score_positive ranks crops; it is not a calibrated probability.",
    ]
    return _with_held_out(facts, limits)


# --- README.md ---------------------------------------------------------------------------------------


def render(card: dict) -> str:
    """README.md from meerkat.json's content: its sections, each ending in a blank line."""
    sections = (_md_headline, _md_contract, _md_training_data, _md_backbone, _md_metrics, _md_threshold_table,
                _md_use_and_limits, _md_provenance)  # fmt: skip
    if "positive_class" not in card:  # species
        sections = (_md_species_headline, _md_species_contract, _md_species_classes, _md_backbone,
                    _md_species_metrics, _md_threshold_table, _md_use_and_limits, _md_provenance)  # fmt: skip
    return "\n".join(line for section in sections for line in section(card))


def _num(x) -> str:
    return number(x, 3)


def _md_headline(card: dict) -> list[str]:
    """The title, the task, and the thresholds worth using."""
    names, t = card["classes"], card["thresholds"]
    rec, best = t.get("recommended"), t.get("best_accuracy")
    lines = [f"# Model card: meerkat {names[0]}/{names[1]} crop classifier", "", card["task"], ""]
    if rec:
        lines += [
            f"**Recommended threshold: `--threshold {rec['threshold']:g}`** ({rec['rule']} on the eval set: "
            f"recall {_num(rec['recall'])}, precision {_num(rec['precision'])}, false-positive rate "
            f"{_num(rec['false_positive_rate'])}, keeps {_num(rec['kept_fraction'])} of the crops). {rec['why']}",
            "",
        ]
    if best:
        lines += [
            f"Best accuracy: `--threshold {best['threshold']:g}` (accuracy {_num(best['accuracy'])}, recall "
            f"{_num(best['recall'])}, precision {_num(best['precision'])}). meerkat's default is 0.5; DeepMeerkat's "
            "operating point was 0.05.",
            "",
        ]
    return lines


def _md_species_headline(card: dict) -> list[str]:
    names, t = card["classes"], card["thresholds"]
    lines = [f"# Model card: meerkat crop classifier, {len(names)} classes", "", card["task"], ""]
    if t.get("kept_when") is None:
        return lines + [
            "There is no background class (none named like empty, blank, background or negative), so no "
            "threshold to recommend: a crop's class is its top score.",
            "",
        ]
    lines += [f"scan keeps a crop when `{t['kept_when']}`.", ""]
    return lines + _md_headline(card)[4:]  # the recommended and best-accuracy thresholds, as the pair's


def _md_species_contract(card: dict) -> list[str]:
    names, given, out = card["classes"], card["input"], card["output"]
    return [
        "## Classes and input contract",
        "",
        f"- Class order (`dict.txt`): {', '.join(f'{i} = `{n}`' for i, n in enumerate(names))}. "
        "**Column i of `scores` is P(class i)**; a crop's class is its top score.",
        f"- Background classes: {', '.join(f'`{n}`' for n in card['background_classes']) or 'none'}.",
        f"- Input: `{given['image_bytes']}` (signature `serving_default`).",
        f"- Decoding: {given['decode']}; {given['resize']}.",
        f"- Outputs: `scores` {out['scores']}; `prediction` {out['prediction']}; `label` {out['label']}.",
        f"- `saved_model.pb` sha256: `{card['model_sha256']}`",
        "",
    ]


def _md_species_classes(card: dict) -> list[str]:
    """A row a class: its crops in each set, and its eval precision, recall and F1."""
    names, data, per = card["classes"], card["training_data"], card["metrics"]["per_class"]
    sets = list(data["counts"])
    return [
        "## Classes: training data and eval metrics",
        "",
        f"From `{data['source']}`. Eval metrics at each crop's top class.",
        "",
        "| class | " + " | ".join(sets) + " | precision | recall | F1 |",
        "|---|" + "---:|" * (len(sets) + 3),
        *(
            f"| {n} | "
            + " | ".join(str(data["counts"][s].get(n, 0)) for s in sets)
            + " | "
            + " | ".join(_num(per[n][k]) for k in ("precision", "recall", "f1"))
            + " |"
            for n in names
        ),
        "",
        f"Skipped (unreadable) files: {data['skipped_files']}; ignored (not images, or links out of their "
        f"class folder): {data['ignored_files']}. The report lists them with their reasons.",
        "",
        *(line for sentence in card["training"].get("splits", []) for line in (sentence, "")),
    ]


def _md_species_metrics(card: dict) -> list[str]:
    names, m = card["classes"], card["metrics"]
    confusion = "; ".join(
        f"{names[i]}: " + ", ".join(f"{c} {names[j]}" for j, c in enumerate(row) if c)
        for i, row in enumerate(m["confusion_matrix"]["matrix"])
        if sum(row)
    )
    head, values = ["top-1 accuracy"], [_num(m["top1"])]
    if "top3" in m:
        head, values = [*head, "top-3 accuracy"], [*values, _num(m["top3"])]
    head, values = [*head, "macro-F1"], [*values, _num(m["macro_f1"])]
    if "roc_auc" in m:
        head += ["ROC AUC, animal vs background", "average precision"]
        values += [_num(m["roc_auc"]), _num(m["average_precision"])]
    return [
        f"## Eval metrics ({m['counts']['total']} crops of the Testing set)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---:|" * len(head),
        "| " + " | ".join(values) + " |",
        "",
        f"Confusion matrix (rows: true, columns: predicted; zeros left out): {confusion}.",
        "",
    ]


def _md_contract(card: dict) -> list[str]:
    names, given, out = card["classes"], card["input"], card["output"]
    return [
        "## Classes and input contract",
        "",
        f"- Class order (`dict.txt`): {', '.join(f'{i} = `{n}`' for i, n in enumerate(names))}. "
        f"**Column 0 of `scores` is P({names[0]})**; a crop is {names[0]} when `scores[:, 0] >= threshold`.",
        f"- Input: `{given['image_bytes']}` (signature `serving_default`; DeepMeerkat's TF1 loader feeds "
        "`Placeholder:0` and reads `final_ops/softmax:0`).",
        f"- Decoding: {given['decode']}; {given['resize']}.",
        f"- Outputs: `scores` {out['scores']}; `prediction` {out['prediction']}; `label` {out['label']}.",
        f"- `saved_model.pb` sha256: `{card['model_sha256']}`",
        "",
    ]


def _md_training_data(card: dict) -> list[str]:
    names, data = card["classes"], card["training_data"]
    return [
        "## Training data",
        "",
        f"From `{data['source']}`.",
        "",
        "| set | " + " | ".join(names) + " | total |",
        "|---|" + "---:|" * (len(names) + 1),
        *(
            f"| {split} | " + " | ".join(str(counts.get(n, 0)) for n in names) + f" | {sum(counts.values())} |"
            for split, counts in data["counts"].items()
        ),
        "",
        f"Skipped (unreadable) files: {data['skipped_files']}; ignored (not images, or links out of their "
        f"class folder): {data['ignored_files']}. The report lists them with their reasons.",
        "",
        *(line for sentence in card["training"].get("splits", []) for line in (sentence, "")),
    ]


def _md_backbone(card: dict) -> list[str]:
    b = card["backbone"]
    alpha = f", alpha {b['alpha']}" if b.get("alpha") else ""
    return [
        "## Backbone",
        "",
        f"- `{b.get('name', '?')}`{alpha}, {b.get('precision', '')}",
        f"- Weights: `{b.get('weights', '')}`",
        f"- Weights sha256: `{b.get('weights_sha256') or 'none (random weights)'}`",
        "",
    ]


def _md_metrics(card: dict) -> list[str]:
    names, m = card["classes"], card["metrics"]
    confusion = "; ".join(
        f"{names[i]}: " + ", ".join(f"{c} {names[j]}" for j, c in enumerate(row))
        for i, row in enumerate(m["confusion_matrix"]["matrix"])
    )
    return [
        f"## Eval metrics ({m['counts']['total']} crops of the Testing set, threshold 0.5)",
        "",
        "| accuracy | precision | recall | false-positive rate | ROC AUC | average precision |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {_num(m['accuracy'])} | {_num(m['precision'])} | {_num(m['recall'])} | {_num(m['false_positive_rate'])} "
        f"| {_num(m['roc_auc'])} | {_num(m['average_precision'])} |",
        "",
        f"Confusion matrix (rows: true, columns: predicted): {confusion}.",
        "",
    ]


def _md_threshold_table(card: dict) -> list[str]:
    if "table" not in card["thresholds"]:
        return []
    return [
        "## Threshold table (eval set)",
        "",
        "| threshold | precision | recall | false-positive rate | crops kept | accuracy | |",
        "|---:|---:|---:|---:|---:|---:|---|",
        *(
            f"| {row['threshold']:g} | {_num(row['precision'])} | {_num(row['recall'])} | "
            f"{_num(row['false_positive_rate'])} | {_num(row['kept_fraction'])} | {_num(row['accuracy'])} | "
            f"{row['note']} |"
            for row in card["thresholds"]["table"]
        ),
        "",
    ]


def _md_use_and_limits(card: dict) -> list[str]:
    return [
        "## Intended use",
        "",
        card["intended_use"],
        "",
        "## Limits",
        "",
        *(f"- {limit}" for limit in card["limits"]),
        "",
    ]


def _md_provenance(card: dict) -> list[str]:
    training = card["training"]
    return [
        "## Provenance",
        "",
        f"- meerkat {card['meerkat']['version']}, revision `{card['meerkat']['revision'] or 'unknown'}`",
        *(f"- {k.replace('_version', '')}: {v}" for k, v in card["versions"].items()),
        f"- Training options: `{json.dumps(training['options'], sort_keys=True)}`",
        # The splits' grouping has its sentences under Training data; meerkat.json has the figures.
        *(
            f"- {k.replace('_', ' ')}: {v}"
            for k, v in training.items()
            if k not in ("options", "split_grouping", "splits")
        ),
        "",
        "The same facts for programs: `meerkat.json` beside this file. The full report: `../report/index.html`.",
        "",
    ]
