"""The training checkpoint, checkpoints/head.npz: everything a killed training needs to resume.

It holds the head's variables (the dropout RNG's state among them), Adam's, the step, the history
and the best epoch's weights, under the fingerprint of the run's inputs, options and code: another
run's checkpoint is never resumed.
"""

import json
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from meerkat.core import atomic

log = logging.getLogger(__name__)


@dataclass
class State:
    """Everything a resumed run needs besides the head and Adam: where it is, the curves, the best weights."""

    step: int = 0
    history: list = field(default_factory=list)
    best: list = field(default_factory=list)  # the head's variables at history.best_epoch


def save(path: Path, fingerprint: str, state: State, head, optimizer) -> None:
    arrays = {f"v{i}": v.numpy() for i, v in enumerate([*head.variables, *optimizer.variables])}
    arrays |= {f"b{i}": a for i, a in enumerate(state.best)}
    with atomic.atomic_open(path, "wb") as f:
        np.savez(f, step=state.step, fingerprint=fingerprint, history=json.dumps(state.history), **arrays)


def restore(path: Path, fingerprint: str, head, optimizer) -> State:
    """A matching checkpoint's state (its weights, optimizer and RNG state loaded), else a fresh one."""
    if not path.is_file():
        return State()
    variables = [*head.variables, *optimizer.variables]
    try:  # all of it read before anything is assigned: a damaged file leaves the fresh head as it is
        with np.load(path) as ckpt:
            if str(ckpt["fingerprint"]) != fingerprint or "history" not in ckpt:
                return State()
            saved = [ckpt[f"v{i}"] for i in range(len(variables))]
            best = [ckpt[f"b{i}"] for i in range(len(head.variables))]
            state = State(int(ckpt["step"]), json.loads(str(ckpt["history"])), best)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        log.warning("warning: the training checkpoint %s is unreadable (%s); training from the start", path, e)
        return State()
    for v, value in zip(variables, saved, strict=True):
        v.assign(value)
    return state
