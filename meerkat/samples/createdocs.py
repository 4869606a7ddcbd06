"""Stage 1: Samples folder -> docs/trainingdata.csv, docs/testingdata.csv, docs/dict.txt.

Replaces DeepMeerkat's CreateDocs.py: the same CSV rows (`path,label`, no header; the format is
docs.py's) and the same undersampling of training negatives, but folder names may be typed in any
case, singular or plural, and the Samples folder is never written to. Any other class folders make
a model of those classes (classes.py says which they are, in which order). Without a Testing
folder a share of Training is held out in whole groups (--group-by, groups.py).
"""

import itertools
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from meerkat.core import atomic, faults, nesting, ownership
from meerkat.core.config import DocsConfig
from meerkat.core.errors import MeerkatError
from meerkat.core.names import folded
from meerkat.core.settings import HOLDOUT_EVERY, IMAGE_EXTENSIONS
from meerkat.samples import classes as classes_
from meerkat.samples import duplicates, groups
from meerkat.samples.classfolder import LEAVES, inside, list_crops
from meerkat.samples.docs import write_csv, write_dict
from meerkat.samples.imagefiles import list_images

log = logging.getLogger(__name__)

SPLIT_NAMES = {"training": ("training", "train"), "testing": ("testing", "test")}
PROGRESS_EVERY_S = 15.0  # without a terminal: a progress line of the duplicate check at most this often


@dataclass
class Docs:
    training_csv: Path
    testing_csv: Path
    dict_txt: Path
    classes: classes_.Classes | None = None
    counts: dict = field(default_factory=dict)
    ignored: list = field(default_factory=list)  # (path, reason)


def _match_dir(parent: Path, names: tuple, what: str) -> Path | None:
    """The one sub-folder of `parent` whose lower-cased name is in `names`, or None."""
    found = sorted(p for p in parent.iterdir() if p.is_dir() and p.name.lower() in names)
    if len(found) > 1:
        listed = ", ".join(p.name for p in found)
        raise MeerkatError(f"{parent} has several {what} folders ({listed}); merge them into one")
    return found[0] if found else None


def _held_out(files: list[Path], class_dir: Path, cfg: DocsConfig) -> tuple[list[bool], bool]:
    """Which of a class's crops are held out for testing, and whether they could be split by group.

    1 in HOLDOUT_EVERY groups by hash (groups.py), a crop without a group by the hash of its path
    inside the class folder: a group's side never changes when others are added. A class of one
    group is split by file."""
    inside = [p.relative_to(class_dir).as_posix() for p in files]
    if cfg.group_by != "none":
        keys = [groups.group_of(rel, cfg.group_by) or rel for rel in inside]
        held = groups.hold_out(keys, cfg.seed, HOLDOUT_EVERY, both_sides=True)
        if held is not None:
            return held, True
    return groups.hold_out(inside, cfg.seed, HOLDOUT_EVERY, both_sides=False), cfg.group_by == "none"


def _hold_out_testing(training: dict[str, list[Path]], train_folders: dict[str, Path], cfg: DocsConfig) -> dict:
    """No Testing folder: move 1 in HOLDOUT_EVERY of each class's training crops (or groups) to testing."""
    what = "images" if cfg.group_by == "none" else f"groups of images (--group-by {cfg.group_by})"
    log.info("No Testing folder: holding out 1 in %d training %s per class for testing.", HOLDOUT_EVERY, what)
    testing, by_file = {}, []
    for label, files in training.items():
        held, grouped = _held_out(files, Path(os.path.abspath(train_folders[label])), cfg)
        if not grouped:
            by_file.append(label)
        testing[label] = [p for p, h in zip(files, held, strict=True) if h]
        training[label] = [p for p, h in zip(files, held, strict=True) if not h]
        if not (testing[label] and training[label]):
            raise MeerkatError(
                f"too few {label} images in {train_folders[label]} to hold out a test set "
                f"({len(files)} found); add images or a Testing folder"
            )
    if by_file:
        log.warning(
            "warning: the crops of %s are all one group (--group-by %s), so they were held out by file and "
            "the test figures of %s may be too kind; add crops of other videos or cameras, or a Testing folder",
            ", ".join(by_file),
            cfg.group_by,
            "that class" if len(by_file) == 1 else "those classes",
        )
    return testing


def _warn_shared_groups(training: dict, testing: dict, folders: tuple[dict, dict], group_by: str) -> None:
    """Training and Testing given: say which groups (videos, images, cameras) have crops in both."""
    if group_by == "none":
        return
    keys = []
    for files, class_dirs in zip((training, testing), folders, strict=True):
        keys.append(
            [
                groups.group_of(p.relative_to(os.path.abspath(class_dirs[label])).as_posix(), group_by)
                for label in files
                for p in files[label]
            ]
        )
    both = groups.shared(*keys)
    if both:
        shown = ", ".join(both[:5]) + (f" and {len(both) - 5} more" if len(both) > 5 else "")
        log.warning(
            "warning: %d %s (--group-by %s) %s crops in both Training and Testing: %s; the test figures count "
            "crops of videos or cameras the model trained on, so they may be too kind; move each to one side",
            len(both),
            "group" if len(both) == 1 else "groups",
            group_by,
            "has" if len(both) == 1 else "have",
            shown,
        )


def _class_folders(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _find_classes(train_dir: Path) -> tuple[classes_.Classes, dict[str, Path]]:
    """The classes of Training's class folders, and the folder of each."""
    folders = _class_folders(train_dir)
    named = {f.name: f for f in folders}
    if len(folders) < classes_.MIN_CLASSES:
        pair = [classes_.pair_label(f.name) for f in folders]
        if all(pair):  # none, or one of DeepMeerkat's pair: name the folder it needs
            missing = next(label for label in classes_.PAIR if label not in pair)
            raise MeerkatError(
                f"no {missing.capitalize()}s folder in {train_dir}; "
                f"create {train_dir}/{missing.capitalize()}s and put the {missing} crops in it"
            )
        raise MeerkatError(
            f"{train_dir} has one class folder ({folders[0].name}); a model needs a folder for each of at least "
            f"{classes_.MIN_CLASSES} classes"
        )
    found, folder_of = classes_.from_folders(named)
    return found, {label: named[folder_of[label]] for label in found.names}


def _testing_folders(test_dir: Path, found: classes_.Classes, train_folders: dict[str, Path]) -> dict[str, Path]:
    """Testing's folder of each class: the Training folder's name, or the pair's other spelling."""
    folders = {f.name: f for f in _class_folders(test_dir)}
    out = {}
    for label in found.names:
        if found.is_pair:
            matches = [f for name, f in folders.items() if classes_.pair_label(name) == label]
        else:
            matches = [f for name, f in folders.items() if folded(name) == folded(label)]
        if len(matches) > 1:
            raise MeerkatError(
                f"{test_dir} has several {label} folders ({', '.join(m.name for m in matches)}); merge them into one"
            )
        if not matches:
            shown = train_folders[label].name
            raise MeerkatError(
                f"no {shown} folder in {test_dir}; create {test_dir}/{shown} and put the {label} test crops in it, "
                "or remove Testing to hold out a share of Training"
            )
        out[label] = matches[0]
    extra = sorted(set(folders.values()) - set(out.values()))
    if extra:
        raise MeerkatError(
            f"{extra[0]} is a class of Testing but not of Training ({', '.join(found.names)}); "
            "add it to Training or move it out of Testing"
        )
    return out


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


def _collect(samples: Path, folders: dict[str, Path], docs: Docs) -> dict[str, list[Path]]:
    out = {}
    for label, d in folders.items():
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
            f"Samples folder not found: {samples}; pass the folder that holds Training/Positives and "
            "Training/Negatives (or a folder a class)"
        )
    train_dir = _match_dir(samples, SPLIT_NAMES["training"], "Training")
    if train_dir is None:
        loose, _ = list_images(samples)
        if loose:
            raise MeerkatError(
                f"found {len(loose)} images but no Training folder in {samples}; sort them into "
                f"{samples}/Training/Positives and {samples}/Training/Negatives (or a folder a class)"
            )
        raise MeerkatError(
            f"no Training folder in {samples}; expected {samples}/Training/Positives and "
            f"{samples}/Training/Negatives, or a folder a class (and optionally the same under Testing/)"
        )
    found, train_folders = _find_classes(train_dir)
    test_dir = _match_dir(samples, SPLIT_NAMES["testing"], "Testing")
    test_folders = _testing_folders(test_dir, found, train_folders) if test_dir else {}
    _check_classes_distinct([*train_folders.values(), *test_folders.values()])
    docs_dir = atomic.ensure_dir(Path(cfg.output) / "docs")
    docs = Docs(docs_dir / "trainingdata.csv", docs_dir / "testingdata.csv", docs_dir / "dict.txt", found)
    training = _collect(samples, train_folders, docs)
    if test_dir is not None:
        testing = _collect(samples, test_folders, docs)
        _warn_shared_groups(training, testing, (train_folders, test_folders), cfg.group_by)
    else:
        testing = _hold_out_testing(training, train_folders, cfg)

    found_counts = {label: len(files) for label, files in training.items()}
    if cfg.balance:
        _undersample_background(training, found, cfg.seed)

    for split, files, path in (("training", training, docs.training_csv), ("testing", testing, docs.testing_csv)):
        write_csv(path, [(str(p), label) for label in found.names for p in files[label]])
        faults.point(f"createdocs:{split}")
        for label in found.names:
            docs.counts[f"{label}_{split}"] = len(files[label])
    write_dict(docs.dict_txt, found)

    if not found.is_pair:
        log.info("%d classes: %s", len(found), ", ".join(found.names))
    for split, files in (("training", training), ("testing", testing)):
        for label in found.names:
            n = len(files[label])
            less = (
                f" (undersampled from {found_counts[label]})" if split == "training" and n < found_counts[label] else ""
            )
            log.info("%s %s samples: %d%s", found.title(label), split, n, less)
    _list_ignored(docs.ignored, docs_dir / "ignored.txt")
    listed = {
        (split, label): files[label]
        for split, files in (("training", training), ("testing", testing))
        for label in found.names
    }
    duplicates.report(duplicates.find(listed, PROGRESS_EVERY_S), docs_dir / "duplicates.txt")
    return docs


def _undersample_background(training: dict[str, list[Path]], found: classes_.Classes, seed: int) -> None:
    """--balance: each background class down to the largest other class, as DeepMeerkat cut its
    negatives down to its positives (the same draw for the pair)."""
    animals = [len(training[n]) for n in found.names if n not in found.background]
    if not animals:
        return
    rng = random.Random(seed)
    for label in found.names:
        if label in found.background and len(training[label]) > max(animals):
            training[label] = sorted(rng.sample(training[label], max(animals)))
