"""report/run.json: what a finished run was made from, and the fingerprint that marks it finished.

metrics.json and predictions.csv hold only what the inputs and options determine (byte-identical
across reruns); timings, versions and paths go here.
"""

import hashlib
import json
import platform
from dataclasses import asdict
from pathlib import Path

from meerkat import __version__, fileio


def fingerprint(train_set, eval_set, train_cfg) -> str:
    """Everything a trained model depends on: the records' inputs and the training options."""
    parts = [train_set.manifest["input_keys"], eval_set.manifest["input_keys"], asdict(train_cfg), __version__]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def finished(output_dir: Path, expected: str) -> bool:
    """Whether OUTPUT holds a model finished from the inputs and options of fingerprint `expected`."""
    try:
        run = json.loads((output_dir / "report" / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return run.get("fingerprint") == expected and (output_dir / "model" / "saved_model.pb").is_file()


def write(output_dir: Path, expected: str, details: dict) -> None:
    """Written last: its fingerprint marks the run as finished."""
    import tensorflow as tf

    run = {
        "fingerprint": expected,
        "meerkat_version": __version__,
        "tensorflow_version": tf.__version__,
        "python_version": platform.python_version(),
        **details,
    }
    fileio.write_text(output_dir / "report" / "run.json", json.dumps(run, indent=2) + "\n")
