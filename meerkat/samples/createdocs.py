"""Stage 1: Samples folder -> docs/trainingdata.csv, docs/testingdata.csv, docs/dict.txt.

Replaces DeepMeerkat's CreateDocs.py: the same CSV rows (`path,label`, no header; the format is
docs.py's) and the same undersampling of training negatives, but folder names may be typed in any
case, singular or plural, and the Samples folder is never written to.
"""

import hashlib
import itertools
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from meerkat.core import atomic, faults, nesting, ownership
from meerkat.core.config import DocsConfig
from meerkat.core.errors import MeerkatError
from meerkat.core.settings import HOLDOUT_EVERY, IMAGE_EXTENSIONS, LABELS
from meerkat.samples import duplicates
from meerkat.samples.classfolder import LEAVES, inside, list_crops
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
    ignored: list = field(default_factory=list)  # (path, reason)


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


def _check_classes_distinct(class_dirs: list[Path]) -> None:
    """Refuse two class folders that are one folder, or one inside the other, through a link: the
    same crops would be in both."""
    for a, b in itertools.combinations(class_dirs, 2):
        real_a, real_b = os.path.realpath(a), os.path.realpath(b)
        if inside(real_a, real_b) or inside(real_b, real_a):
            raise MeerkatError(
                f"{a} and {b} are the same folder or one holds the other (they lead to {real_a} and {real_b}); "
                "give each class of each set a folder of its own"
            )


def _collect(samples: Path, split_dir: Path, docs: Docs) -> dict[str, list[Path]]:
    out = {}
    for label, d in _find_classes(split_dir).items():
        images, ignored = list_crops(d, d.relative_to(samples).as_posix())
        docs.ignored += ignored
        if not images:
            exts = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
            links = sum(reason.startswith(LEAVES) for _, reason in ignored)
            out_links = f"; not followed: {links} link{'s' * (links > 1)} out of it" if links else ""
            raise MeerkatError(f"no images in {d} (looked for {exts}{out_links}); add crops or fix the folder")
        out[label] = images
    return out


def _list_ignored(ignored: list[tuple[Path, str]], path: Path) -> None:
    """docs/ignored.txt: `path,reason` rows as in the docs CSVs (the names' bytes), or none at all."""
    if not ignored:
        if os.path.lexists(path):
            ownership.remove(path, "an earlier run's list of ignored files")  # the report would list them
        return
    write_csv(path, [(str(p), reason) for p, reason in ignored])
    links = [p for p, reason in ignored if reason.startswith(LEAVES)]
    if links:
        shown = ", ".join(str(p) for p in links[:3])
        log.warning(
            "warning: did not follow %d %s, so that no crop is filed under another folder's label (listed in %s): %s%s",
            len(links),
            "link out of its class folder" if len(links) == 1 else "links out of their class folder",
            path,
            shown,
            f" and {len(links) - 3} more" if len(links) > 3 else "",
        )
    others = [p for p, reason in ignored if not reason.startswith(LEAVES)]
    if others:
        shown = ", ".join(str(p) for p in others[:5])
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        log.info("Ignored %d non-image files (listed in %s): %s%s", len(others), path, shown, more)


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

    test_dir = _match_dir(samples, SPLIT_NAMES["testing"], "Testing")
    _check_classes_distinct([d for split in (train_dir, test_dir) if split for d in _find_classes(split).values()])
    training = _collect(samples, train_dir, docs)
    if test_dir is not None:
        testing = _collect(samples, test_dir, docs)
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
    _list_ignored(docs.ignored, docs_dir / "ignored.txt")
    listed = {("training", label): training[label] for label in LABELS}
    listed |= {("testing", label): testing[label] for label in LABELS}
    duplicates.report(duplicates.find(listed, PROGRESS_EVERY_S), docs_dir / "duplicates.txt")
    return docs
