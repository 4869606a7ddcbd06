"""Reading a model card (model/meerkat.json, written by report/model_card.py): the threshold it recommends.

`predict`, `clips --model` and `scan` print one note when they use another threshold
(threshold_note). Models exported before the card existed have no meerkat.json, and then nothing
is printed. Imported by those commands: it stays light (no TensorFlow, no matplotlib).
"""

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

CARD_JSON = "meerkat.json"


def read(model_dir) -> dict | None:
    """meerkat.json of a model folder; None for models exported before the card existed (or a bad card)."""
    path = Path(model_dir) / CARD_JSON
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.debug("ignoring the model card %s: %s", path, e)
        return None
    return card if isinstance(card, dict) else None


def recommended(model_dir) -> dict | None:
    """The card's recommended threshold ({threshold, short, rule, ...}), or None."""
    card = read(model_dir)
    rec = (card or {}).get("thresholds", {}).get("recommended") if card else None
    if not isinstance(rec, dict) or not isinstance(rec.get("threshold"), int | float):
        return None
    return rec


def threshold_note(model_dir, threshold: float) -> str | None:
    """One line when `threshold` is not the card's recommended one; None when it is, or without a card."""
    rec = recommended(model_dir)
    if rec is None or abs(float(rec["threshold"]) - threshold) < 1e-9:
        return None
    why = rec.get("short") or "its recommended threshold"
    return f"note: the model card recommends --threshold {rec['threshold']:g} ({why} on its eval set); " + (
        f"using {threshold:g}"
    )
