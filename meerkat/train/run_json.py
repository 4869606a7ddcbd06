"""report/run.json: what a finished run was made from, and the fingerprint that marks it finished.

metrics.json and predictions.csv hold only what the inputs and options determine (byte-identical
across reruns); timings, versions, paths and how the splits were grouped (`grouping`) go here.
`report_problems` lists the parts of the report (page, TensorBoard summaries, card) that could not
be written: such a run has its model and metrics, and a rerun redoes only the report, as it does
when the report's code key changed.
"""

import hashlib
import json
import platform
from dataclasses import asdict
from pathlib import Path

from meerkat import __version__
from meerkat.core import atomic, codeversion


def fingerprint(train_set, eval_set, train_cfg) -> str:
    """Everything a trained model depends on: the shards' inputs, the training options and the code."""
    parts = [
        train_set.manifest["input_keys"],
        eval_set.manifest["input_keys"],
        asdict(train_cfg),
        codeversion.key("model"),
    ]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def finished(output_dir: Path, expected: str) -> dict | None:
    """run.json of the model OUTPUT holds, if it was finished from the inputs and options of
    fingerprint `expected` (its report may still be incomplete); else None."""
    try:
        run = json.loads((output_dir / "report" / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(run, dict) or run.get("fingerprint") != expected:
        return None
    if not (output_dir / "model" / "saved_model.pb").is_file():
        return None
    return run


def contents(details: dict) -> dict:
    """What run.json holds but the fingerprint and the report's state: versions, then `details`."""
    import tensorflow as tf

    return {
        "meerkat_version": __version__,
        "tensorflow_version": tf.__version__,
        "python_version": platform.python_version(),
        **details,
    }


def grouping(train_set, eval_set, train_cfg) -> dict:
    """How the splits were grouped (--group-by, samples/groups.py), for the page and the card: the
    groups of each set, those with crops in both (trained on and tested on), and the classes whose
    validation part was split by file as they form too few groups."""
    from meerkat.samples import groups
    from meerkat.train import data

    mode = train_cfg.group_by
    keys = {name: groups.keys_of(s.uris, mode) for name, s in (("train", train_set), ("eval", eval_set))}
    both = groups.shared(keys["train"], keys["eval"])
    fraction = train_cfg.validation_fraction
    by_file = data.validation_index(train_set, fraction, train_cfg.seed, mode).by_file if fraction else []
    return {
        "group_by": mode,
        "train_groups": len({k for k in keys["train"] if k is not None}),
        "eval_groups": len({k for k in keys["eval"] if k is not None}),
        "groups_in_train_and_eval": len(both),
        "groups_in_train_and_eval_examples": both[:5],
        "validation_split_by_file": by_file,
    }


def report_to_redo(run: dict) -> list[str]:
    """Why the report of a finished run must be written again: the parts that failed, or a change of
    the code that writes it (an upgrade); nothing when it is complete."""
    if run.get("report_problems"):
        return run["report_problems"]
    if run.get("report_code") != codeversion.key("report"):
        return ["meerkat's report code changed"]
    return []


def write(output_dir: Path, expected: str, contents: dict, report_problems: list[str]) -> None:
    """Written last: its fingerprint marks the run as finished, `report_problems` what is left to redo."""
    run = {"fingerprint": expected, **contents, "report_code": codeversion.key("report")}
    run["report_problems"] = report_problems
    atomic.write_text(output_dir / "report" / "run.json", json.dumps(run, indent=2) + "\n")
