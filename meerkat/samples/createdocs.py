"""Stage 1: Samples folder -> docs/trainingdata.csv, docs/testingdata.csv, docs/dict.txt.

Replaces DeepMeerkat's CreateDocs.py: the same CSV rows (`path,label`, no header; the format is
docs.py's) and the same undersampling of training negatives, but folder names may be typed in any
case, singular or plural, and the Samples folder is never written to.
"""

import hashlib
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from meerkat.core import atomic, faults, nesting, ownership
from meerkat.core.config import DocsConfig
from meerkat.core.errors import MeerkatError
from meerkat.core.progress import Progress
from meerkat.core.settings import HOLDOUT_EVERY, IMAGE_EXTENSIONS, LABELS
from meerkat.samples.docs import write_csv, write_dict
from meerkat.samples.imagefiles import list_images

log = logging.getLogger(__name__)

SPLIT_NAMES = {"training": ("training", "train"), "testing": ("testing", "test")}
CLASS_NAMES = {"positive": ("positive", "positives"), "negative": ("negative", "negatives")}
PROGRESS_EVERY_S = 15.0  # without a terminal: a progress line of the duplicate check at most this often


@dataclass
class Docs:
    training_csv: Path
    testing_csv: Path
    dict_txt: Path
    counts: dict = field(default_factory=dict)
    ignored: list = field(default_factory=list)


def _match_dir(parent: Path, names: tuple, what: str) -> Path | None:
    """The one sub-folder of `parent` whose lower-cased name is in `names`, or None."""
    found = sorted(p for p in parent.iterdir() if p.is_dir() and p.name.lower() in names)
    if len(found) > 1:
        listed = ", ".join(p.name for p in found)
        raise MeerkatError(f"{parent} has several {what} folders ({listed}); merge them into one")
    return found[0] if found else None


def _held_out(path: Path, class_dir: Path, seed: int) -> bool:
    # Hash of the path inside its class folder: a file's side never changes when others are added.
    key = f"{seed}/{path.relative_to(class_dir).as_posix()}".encode(**atomic.TEXT)
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % HOLDOUT_EVERY == 0


def _find_classes(split_dir: Path) -> dict[str, Path]:
    dirs = {}
    for label, names in CLASS_NAMES.items():
        d = _match_dir(split_dir, names, label)
        if d is None:
            raise MeerkatError(
                f"no {label.capitalize()}s folder in {split_dir}; "
                f"create {split_dir}/{label.capitalize()}s and put the {label} crops in it"
            )
        dirs[label] = d
    return dirs


def _collect(split_dir: Path, docs: Docs) -> dict[str, list[Path]]:
    out = {}
    for label, d in _find_classes(split_dir).items():
        images, ignored = list_images(d)
        docs.ignored += ignored
        if not images:
            exts = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
            raise MeerkatError(f"no images in {d} (looked for {exts}); add crops or fix the folder")
        out[label] = [Path(os.path.abspath(p)) for p in images]
    return out


def _content_hash(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _warn_overlap(training: list[Path], testing: list[Path]) -> None:
    test_hashes, both = {}, []
    with Progress("Hashing for duplicates", len(training) + len(testing), "files", PROGRESS_EVERY_S) as p:
        try:
            for n, path in enumerate(testing, start=1):
                test_hashes[_content_hash(path)] = path
                p.update(n)
            for n, path in enumerate(training, start=len(testing) + 1):
                if (h := _content_hash(path)) in test_hashes:
                    both.append((path, test_hashes[h]))
                p.update(n)
        except OSError:
            return  # an unreadable file is reported by preprocess, where it is skipped
    if both:
        examples = "; ".join(f"{a} = {b}" for a, b in both[:3])
        log.warning(
            "warning: %d training images also appear in Testing (same content), so test accuracy will "
            "be optimistic; remove them from one side. E.g. %s",
            len(both),
            examples,
        )


def check_apart(cfg: DocsConfig, output_name: str = "--output") -> None:
    """Refuse an output folder inside SAMPLES (its report PNGs would be read back as crops), or
    SAMPLES inside it, before any work."""
    nesting.check_apart(cfg.output, [("SAMPLES", cfg.samples)], output_name)


def createdocs(cfg: DocsConfig) -> Docs:
    check_apart(cfg)
    samples = Path(cfg.samples)
    if not samples.is_dir():
        raise MeerkatError(
            f"Samples folder not found: {samples}; pass the folder that holds Training/Positives and Training/Negatives"
        )
    train_dir = _match_dir(samples, SPLIT_NAMES["training"], "Training")
    if train_dir is None:
        loose, _ = list_images(samples)
        if loose:
            raise MeerkatError(
                f"found {len(loose)} images but no Training folder in {samples}; sort them into "
                f"{samples}/Training/Positives and {samples}/Training/Negatives"
            )
        raise MeerkatError(
            f"no Training folder in {samples}; expected {samples}/Training/Positives and "
            f"{samples}/Training/Negatives (and optionally the same under Testing/)"
        )
    docs_dir = atomic.ensure_dir(Path(cfg.output) / "docs")
    docs = Docs(docs_dir / "trainingdata.csv", docs_dir / "testingdata.csv", docs_dir / "dict.txt")

    training = _collect(train_dir, docs)
    test_dir = _match_dir(samples, SPLIT_NAMES["testing"], "Testing")
    if test_dir is not None:
        testing = _collect(test_dir, docs)
    else:
        log.info("No Testing folder: holding out 1 in %d training images per class for testing.", HOLDOUT_EVERY)
        class_dirs = _find_classes(train_dir)
        testing = {}
        for label, files in training.items():
            cd = Path(os.path.abspath(class_dirs[label]))
            testing[label] = [p for p in files if _held_out(p, cd, cfg.seed)]
            training[label] = [p for p in files if not _held_out(p, cd, cfg.seed)]
            if not (testing[label] and training[label]):
                raise MeerkatError(
                    f"too few {label} images in {class_dirs[label]} to hold out a test set "
                    f"({len(files)} found); add images or a Testing folder"
                )

    found_negatives = len(training["negative"])
    if cfg.balance and found_negatives > len(training["positive"]):
        rng = random.Random(cfg.seed)
        training["negative"] = sorted(rng.sample(training["negative"], len(training["positive"])))

    for split, files, path in (("training", training, docs.training_csv), ("testing", testing, docs.testing_csv)):
        write_csv(path, [(str(p), label) for label in LABELS for p in files[label]])
        faults.point(f"createdocs:{split}")
        for label in LABELS:
            docs.counts[f"{label}_{split}"] = len(files[label])
    write_dict(docs.dict_txt)

    c = docs.counts
    log.info("Positive training samples: %d", c["positive_training"])
    balanced = f" (undersampled from {found_negatives})" if c["negative_training"] < found_negatives else ""
    log.info("Negative training samples: %d%s", c["negative_training"], balanced)
    log.info("Positive testing samples: %d", c["positive_testing"])
    log.info("Negative testing samples: %d", c["negative_testing"])
    ignored_txt = docs_dir / "ignored.txt"
    if not docs.ignored and os.path.lexists(ignored_txt):
        ownership.remove(ignored_txt, "an earlier run's list of ignored files")  # the report would list them
    if docs.ignored:
        with atomic.atomic_open(ignored_txt, "w", **atomic.TEXT) as f:  # the names' bytes, as in the CSVs
            f.write("".join(f"{p}\n" for p in docs.ignored))
        shown = ", ".join(str(p) for p in docs.ignored[:5])
        more = f" and {len(docs.ignored) - 5} more" if len(docs.ignored) > 5 else ""
        log.info("Ignored %d non-image files (listed in %s): %s%s", len(docs.ignored), ignored_txt, shown, more)
    _warn_overlap([p for files in training.values() for p in files], [p for files in testing.values() for p in files])
    return docs
