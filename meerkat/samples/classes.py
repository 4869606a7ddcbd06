"""The classes of a model: their names, their order, which of them mean "nothing here", and
DeepMeerkat's pair. Every stage asks this module; none spells a class out itself.

- From folders: `Samples/Training/<Class>/`, any number of classes from 2, named as the user typed
  the folders (spaces, case, accents). Their order, the model's and dict.txt's, is by the names'
  code points with case ignored (deer, empty, Red fox, Élan): never a listing's or a locale's.
- DeepMeerkat's pair: folders spelled `Positives`/`Negatives` (any case, singular or plural) are
  the labels `positive` and `negative`, positive first, as DeepMeerkat's CreateDocs.py wrote them
  and its loader reads the softmax. Two classes named otherwise are two classes like any others.
- Background: the classes that mean no animal, for scan's keep rule. By default those named like
  negative, empty, blank, background or nothing; `--background` names them instead. A crop is
  kept when 1 - (the background classes' scores) reaches the threshold: for the pair, exactly
  P(positive), DeepMeerkat's rule.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from meerkat.core.errors import MeerkatError
from meerkat.core.names import folded

POSITIVE, NEGATIVE = PAIR = ("positive", "negative")
# The folder names of DeepMeerkat's pair, as folded: Positives, positive, NEGATIVES, ...
PAIR_FOLDERS = {POSITIVE: ("positive", "positives"), NEGATIVE: ("negative", "negatives")}
BACKGROUND_WORDS = ("negative", "empty", "blank", "background", "nothing", "none")
MIN_CLASSES = 2
SCORE_DECIMALS = 6  # as predictions.csv, annotations.csv and predict's CSV print scores
DEFAULT_THRESHOLD = 0.5


def printed(scores) -> np.ndarray:
    """Scores as the CSVs print them, and as predict and scan compare them with --threshold."""
    return np.array([round(float(s), SCORE_DECIMALS) for s in np.asarray(scores).ravel()], dtype=np.float64)


def _order(name: str) -> tuple[str, str]:
    return folded(name), name


def in_order(names: Iterable[str]) -> list[str]:
    """Class names in the order of a model's classes: by code point, case ignored."""
    return sorted(names, key=_order)


def is_background_name(name: str) -> bool:
    """Whether a class name reads as "no animal here": negative(s), empty, blank, background, ..."""
    word = folded(name).strip()
    return word in BACKGROUND_WORDS or (word.endswith("s") and word[:-1] in BACKGROUND_WORDS)


def pair_label(folder_name: str) -> str | None:
    """`positive` or `negative` for a folder named as DeepMeerkat's pair is, else None."""
    word = folded(folder_name)
    return next((label for label, names in PAIR_FOLDERS.items() if word in names), None)


@dataclass(frozen=True)
class Classes:
    """A model's classes in its output order, and the set of them that are background."""

    names: tuple[str, ...]
    background: frozenset[str]

    @classmethod
    def of(cls, names: Iterable[str], background: Iterable[str] | None = None) -> "Classes":
        """The classes `names` in model order; background by name unless `background` names them."""
        names = tuple(names)
        check_names(names)
        if background is None:
            chosen = frozenset(n for n in names if is_background_name(n))
        else:
            chosen = frozenset(_find(names, b, "--background") for b in background)
        return cls(names, chosen)

    @property
    def is_pair(self) -> bool:
        """DeepMeerkat's two classes, positive first."""
        return self.names == PAIR

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def keep_scores(self, probabilities: np.ndarray) -> np.ndarray:
        """P(not background) of each row of `probabilities` [N, classes]: 1 - the background scores.

        For the pair, the positive column itself, so the figures are bit for bit today's."""
        probabilities = np.asarray(probabilities)
        if self.is_pair:
            return probabilities[:, 0]
        mask = np.array([n in self.background for n in self.names])
        return 1.0 - probabilities[:, mask].sum(axis=1)

    def predicted(self, probabilities: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
        """Each row's class index: for the pair, positive when P(positive) as printed reaches
        `threshold` (the rule of predict, scan and the report); else the top class."""
        probabilities = np.asarray(probabilities)
        if self.is_pair:
            return np.where(printed(probabilities[:, 0]) >= threshold, 0, 1)
        return np.argmax(probabilities, axis=1)

    def top(self, probabilities: np.ndarray) -> list[str]:
        """The most likely class of each row (the first of equal ones, as the model's argmax)."""
        return [self.names[i] for i in np.argmax(np.asarray(probabilities), axis=1)]

    def score_column(self, name: str) -> str:
        """The CSV column of one class's score: score_positive for the pair, as DeepMeerkat's users know it."""
        return f"score_{name}"

    def title(self, name: str) -> str:
        """A class as a log line or a page starts with it: Positive for the pair, else as typed."""
        return name.capitalize() if self.is_pair else name

    def score_columns(self) -> list[str]:
        """predict's and clips' score columns: score_positive alone for the pair, else score_<class> each."""
        return [self.score_column(n) for n in (self.names[:1] if self.is_pair else self.names)]

    def keep_name(self) -> str:
        """What scan.csv and the logs call the figure scan keeps by: score_positive for the pair."""
        return self.score_column(self.names[0]) if self.is_pair else "score_animal"

    def folder(self, name: str) -> str:
        """A class's folder under Samples/Training or suggested/: Positives/Negatives for the pair."""
        return f"{name.capitalize()}s" if self.is_pair else name


def check_names(names: tuple[str, ...]) -> None:
    """Refuse fewer than two classes, an empty name, or two names one folder on a case-ignoring disk."""
    if len(names) < MIN_CLASSES:
        found = ", ".join(map(repr, names)) or "none"
        raise MeerkatError(f"a model needs at least {MIN_CLASSES} classes, found {found}; add a folder a class")
    seen: dict[str, str] = {}
    for name in names:
        if not name.strip() or name != name.strip() or "\n" in name or "\r" in name:
            # dict.txt holds a name a line, stripped: such a name would not come back as written
            raise MeerkatError(
                f"class name {name!r} is empty, starts or ends with a space or holds a line break; rename it"
            )
        other = seen.setdefault(folded(name), name)
        if other != name or names.count(name) > 1:
            raise MeerkatError(f"classes {other!r} and {name!r} differ only in case; give them one folder")


def _find(names: tuple[str, ...], wanted: str, option: str) -> str:
    matches = [n for n in names if n == wanted] or [n for n in names if folded(n) == folded(wanted)]
    if not matches:
        raise MeerkatError(f"{option} {wanted!r} is not one of the classes ({', '.join(names)}); name one of them")
    return matches[0]


def from_folders(folder_names: Iterable[str]) -> tuple[Classes, dict[str, str]]:
    """The classes of a Training folder's class folders, and the folder of each label.

    Folders named as DeepMeerkat's pair, and only those two, give the pair; any others give their
    own names, in order. Two folders that are one class (Positives and positive) are refused."""
    folder_names = list(folder_names)
    labels = {name: pair_label(name) for name in folder_names}
    if len(folder_names) == 2 and sorted(filter(None, labels.values())) == sorted(PAIR):
        return Classes.of(PAIR), {label: name for name, label in labels.items()}
    same = [n for n in folder_names if labels[n]]
    for label in PAIR:
        spelled = [n for n in same if labels[n] == label]
        if len(spelled) > 1:
            raise MeerkatError(f"several {label} folders ({', '.join(spelled)}); merge them into one")
    names = in_order(folder_names)
    return Classes.of(names), {name: name for name in names}


def from_labels(labels: Iterable[str], background: Iterable[str] | None = None) -> Classes:
    """The classes of a dict.txt's labels, in its order. DeepMeerkat's pair in any case is the pair;
    negative before positive is refused: DeepMeerkat reads column 0 as P(positive)."""
    labels = tuple(labels)
    spelled = tuple(folded(n) for n in labels)
    if spelled == PAIR:
        labels = PAIR
    elif spelled == PAIR[::-1]:
        raise MeerkatError("the labels are negative, positive; DeepMeerkat's pair is positive, negative in that order")
    return Classes.of(labels, background)


def canonical(label: str, classes: Classes) -> str | None:
    """A CSV's label as one of `classes`: as written, else ignoring case (DeepMeerkat wrote the
    pair in lower case, users type `Positive`); None when it is none of them."""
    if label in classes.names:
        return label
    found = [n for n in classes.names if folded(n) == folded(label)]
    return found[0] if len(found) == 1 else None
