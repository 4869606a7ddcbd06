"""One sorting session: the crops still to sort, the classes and their counts, and what a key press
does to files (assign, accept, skip, undo, a new class). The server (server.py) turns requests into
these calls, one at a time.

State lives in SAMPLES/meerkat-sort/, a folder of meerkat's own: the move log, the thumbnails and a
model's cached scores. A second session on the same SAMPLES is refused while one runs; a killed
one leaves nothing that blocks the next.
"""

import logging
import os
from contextlib import ExitStack
from pathlib import Path

from meerkat.core import atomic, locks, ownership
from meerkat.core.errors import MeerkatError
from meerkat.core.names import folded
from meerkat.samples.classes import in_order
from meerkat.samples.classfolder import reason_by_name
from meerkat.sort import catalog, guesses, moves, thumbs
from meerkat.sort.catalog import Crop
from meerkat.sort.paths import Refused, below, check_class_name

log = logging.getLogger(__name__)

STATE = "meerkat-sort"
ORDERS = ("uncertain", "name")


def _count(folder: Path) -> int:
    return sum(reason_by_name(n) is None for _, _, files in os.walk(folder) for n in files)


class Session:
    def __init__(self, crops: Path, samples: Path, model: Path | None = None):
        self.crops, self.samples = Path(crops), Path(samples)
        self.state_dir = self.samples / STATE
        self._stack = ExitStack()
        self.listing = catalog.list_crops(self.crops)  # first: a CROPS mistyped leaves no SAMPLES/meerkat-sort
        training = self._training()
        if training.is_symlink():
            raise MeerkatError(
                f"{training} is a link (to {os.path.realpath(training)}); meerkat sort moves crops only into a real "
                "folder: make Training a folder, or pass the Samples folder the link leads into"
            )
        self._prepare_state()
        try:
            self._open(model)
        except BaseException:  # a model that cannot load, say: the lock goes with the error
            self.close()
            raise

    def _open(self, model: Path | None) -> None:
        self.root = self.listing.root
        self.log = moves.Log(self.state_dir / "moves.jsonl")
        finished = moves.recover(self.log, self.root, self.samples)
        if finished := finished + moves.adopt(self.log, self.listing.crops, self.root, self.samples):
            log.info("Finished %d moves an earlier session was stopped in the middle of", finished)
            self.listing = catalog.list_crops(self.crops)
        self.crops_list = self.listing.crops
        self.by_id = {c.id: c for c in self.crops_list}
        self.by_rel = {c.rel: c for c in self.crops_list}
        self.unscored: list[tuple[str, str]] = []
        self.source = self._guess(model)
        self.thumbs = self.state_dir / "thumbs"
        self._front = 0  # undone crops come back first, newest first
        for n, rel in enumerate(self.log.skips):  # skipped in an earlier session: still last
            if crop := self.by_rel.get(rel):
                crop.pos = 1e9 + n
        self.classes: dict[str, int] = {}
        self.problems: list[str] = []
        self._scan_classes()

    def _prepare_state(self) -> None:
        if self.state_dir.exists() and not ownership.owns(self.state_dir):
            raise MeerkatError(
                f"{self.state_dir} exists and is not meerkat's: meerkat sort keeps its log and thumbnails there; "
                "rename that folder"
            )
        atomic.output_dir(self.state_dir)
        self._stack.enter_context(locks.output_lock(self.state_dir))

    def close(self) -> None:
        self._stack.close()

    def _guess(self, model: Path | None) -> str:
        if model:
            source, self.unscored = guesses.from_model(model, self.root, self.crops_list, self.state_dir)
            return source
        if table := guesses.suggestions_table(self.crops):
            return guesses.from_suggestions(table, self.crops_list)
        return guesses.from_labels_table(self.crops, self.crops_list) or ""

    # --- the classes -------------------------------------------------------------------------------

    def _training(self) -> Path:
        return self.samples / moves.TRAINING

    def _scan_classes(self) -> None:
        """The class folders of SAMPLES/Training and their crops; the guesses' classes too (made on first use)."""
        training = self._training()
        if training.is_dir():
            for entry in sorted(os.scandir(training), key=lambda e: e.name):
                if entry.name.startswith("."):
                    continue
                if entry.is_symlink():
                    self.problems.append(f"{moves.TRAINING}/{entry.name} is a link: nothing is moved into it")
                elif entry.is_dir():
                    self.classes[entry.name] = _count(entry.path)
        for crop in self.crops_list:
            if crop.guess and not self._folder_of(crop.guess):
                self.classes[crop.guess] = 0

    def _folder_of(self, name: str) -> str | None:
        """The class folder `name` is, case ignored (a model's `deer` is the user's `Deer/`)."""
        if name in self.classes:
            return name
        return next((c for c in self.classes if folded(c) == folded(name)), None)

    def class_list(self) -> list[dict]:
        names = in_order(self.classes)
        return [{"name": atomic.shown(n), "key": i + 1 if i < 9 else None, "count": self.classes[n]}
                for i, n in enumerate(names)]  # fmt: skip

    def add_class(self, name) -> dict:
        training = self._training()
        made = [e.name for e in os.scandir(training)] if training.is_dir() else []  # by hand since the start too
        name = check_class_name(name, [*self.classes, *made])
        self._class_dir(name)
        self.classes.setdefault(name, 0)
        return {**self.summary(), "message": f"class {name}: {moves.TRAINING}/{name}/"}

    def _class_dir(self, name: str) -> Path:
        """SAMPLES/Training/<name>/, made if missing; refused if a link or a file is in the way."""
        os.makedirs(self._training(), exist_ok=True)
        path = below(self.samples, f"{moves.TRAINING}/{name}", must_exist=False)
        if not path.exists():
            os.mkdir(path)  # a user's folder from now on: no list of meerkat's in it
        elif not path.is_dir():
            raise Refused(f"{moves.TRAINING}/{name} is a file, not a class folder")
        return path

    # --- the crops ---------------------------------------------------------------------------------

    def order_key(self, order: str):
        # Ids are the names' natural order (catalog.list_crops numbers them so): comparing 20,000 names again
        # took 0.2 s a sort. An undone crop's new id never decides: its place is its own pos.
        if order == "name":
            return lambda c: (c.pos >= 1e9, c.pos if c.pos < 0 or c.pos >= 1e9 else 0, c.id)
        return lambda c: (c.pos >= 1e9, c.pos if c.pos < 0 or c.pos >= 1e9 else 0,
                          -1.0 if c.margin is None else c.margin, c.id)  # fmt: skip

    def item(self, crop: Crop) -> dict:
        from urllib.parse import quote

        url = quote(crop.rel, errors="surrogateescape")
        guess = crop.guess and atomic.shown(self._folder_of(crop.guess) or crop.guess)
        # The page makes /thumb/<url>?k=<k> and /crop/<url> of it: 20,000 crops' list is a third smaller.
        return {"id": crop.id, "name": atomic.shown(crop.rel), "url": url, "k": thumbs.key(crop), "guess": guess,
                "score": None if crop.score is None else round(crop.score, 3)}  # fmt: skip

    def pending(self, order: str) -> list[dict]:
        if order not in ORDERS:
            raise Refused(f"order must be one of {', '.join(ORDERS)}")
        todo = [c for c in self.crops_list if c.state == "pending"]
        return [self.item(c) for c in sorted(todo, key=self.order_key(order))]

    def summary(self) -> dict:
        left = sum(c.state == "pending" for c in self.crops_list)
        return {"classes": self.class_list(), "left": left, "source": atomic.shown(self.source),
                "samples": atomic.shown(str(self.samples)), "crops": atomic.shown(str(self.crops)),
                "left_out": [[atomic.shown(p), why] for p, why in self.listing.left_out + self.unscored][:200],
                "left_out_count": len(self.listing.left_out) + len(self.unscored),
                "problems": self.problems, "undo": self.log.undoable() is not None}  # fmt: skip

    def _answer(self, problems: list[dict], **done) -> dict:
        """An action's answer: what it did, its problems and the session's own after them, and the summary (whose
        `problems`, the session's own, must not hide the action's)."""
        return {**self.summary(), **done, "problems": problems + [{"why": p} for p in self.problems]}

    def _crops(self, ids) -> list[Crop]:
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) for i in ids):
            raise Refused("no crops given")
        return [self.by_id[i] for i in ids if i in self.by_id]

    def assign(self, ids, name=None) -> dict:
        """Move the crops into class `name`'s folder, or each into its guess's (name None: accept)."""
        if name is not None and self._folder_of(name) is None:
            raise Refused(f"{name!r} is not a class; make it first")
        action, events, done, problems, made = self.log.next_action(), [], [], [], []
        for crop in self._crops(ids):
            target = name if name is not None else crop.guess
            if crop.state != "pending":
                problems.append({"id": crop.id, "why": f"{crop.rel} was sorted already"})
                continue
            if not target:
                problems.append({"id": crop.id, "why": f"{crop.rel} has no guess to accept"})
                continue
            folder = self._folder_of(target)
            if folder is None:  # a guess of no class: a problem, for the crops linked before it are still to be logged
                problems.append({"id": crop.id, "why": f"{target!r} is not a class; make it first"})
                continue
            if why := catalog.restat(self.root, crop):
                gone = not (self.root / crop.rel).is_file()
                if gone:
                    crop.state = "gone"
                else:  # listed afresh: the next key press sorts what is there now
                    st = os.lstat(self.root / crop.rel)
                    crop.size, crop.mtime_ns, crop.ino = st.st_size, st.st_mtime_ns, st.st_ino
                fix = "it is left where it is" if gone else "look at it again and sort it again"
                problem = {"id": crop.id, "gone": gone, "why": f"{crop.rel} {why}; {fix}"}
                problems.append(problem if gone else {**problem, "item": self.item(crop)})
                continue
            try:  # the crops linked so far must still be logged: no crop is left with two names
                new = moves.link_in(below(self.root, crop.rel), self._class_dir(folder), crop.rel.rsplit("/", 1)[-1])
            except (Refused, OSError) as e:
                problems.append({"id": crop.id, "why": f"{crop.rel} cannot go to {folder}: {e}"})
                continue
            st = os.lstat(new)
            to = f"{moves.TRAINING}/{folder}/{new.name}"
            events.append({"action": action, "op": "move", "from": crop.rel, "to": to, "size": st.st_size,
                           "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "time": moves.now()})  # fmt: skip
            made.append((crop, new, folder, to))
        if events:
            self.log.write(events)
        for crop, new, folder, to in made:
            moves.release(self.root / crop.rel, new)
            crop.state, crop.moved_to = "moved", to
            self.classes[folder] += 1
            renamed = new.name != crop.rel.rsplit("/", 1)[-1]
            done.append({"id": crop.id, "to": atomic.shown(to), "renamed": renamed})
        return self._answer(moved=done, problems=problems)

    def skip(self, ids) -> dict:
        crops = [c for c in self._crops(ids) if c.state == "pending"]
        start = len(self.log.skips)
        self.log.write([{"action": self.log.next_action(), "op": "skip", "from": c.rel} for c in crops])
        for n, crop in enumerate(crops):
            crop.pos = 1e9 + start + n
        return {"skipped": [c.id for c in crops], **self.summary()}

    def undo(self) -> dict:
        """Take back the newest move action: each crop goes back to its old name, or a free one."""
        action = self.log.undoable()
        if action is None:
            return self._answer(restored=[], problems=[{"why": "nothing to undo"}])
        restored, problems = [], []
        for move in self.log.moves[action]:
            try:
                crop = self._restore(move)
            except (Refused, OSError) as e:
                problems.append({"why": f"{move.to} cannot go back to {move.frm}: {e}"})
                continue
            restored.append(self.item(crop))
        self.log.write([{"action": self.log.next_action(), "op": "undo", "of": action, "time": moves.now()}])
        return self._answer(restored=restored, problems=problems)

    def _restore(self, move: moves.Move) -> Crop:
        new = below(self.samples, move.to)
        st = os.lstat(new)
        if (st.st_size, st.st_mtime_ns, st.st_ino) != (move.size, move.mtime_ns, move.ino):
            raise Refused("it changed since it was moved; it stays where it is")
        parent, _, name = move.frm.rpartition("/")
        folder = below(self.root, parent, must_exist=False) if parent else self.root
        os.makedirs(folder, exist_ok=True)
        old = moves.link_in(new, folder, name, exact=True)
        moves.release(new, old)
        rel = os.path.relpath(old, self.root).replace(os.sep, "/")
        folder_name = move.to.split("/")[1]
        if folder_name in self.classes:
            self.classes[folder_name] = max(0, self.classes[folder_name] - 1)
        st = os.lstat(old)
        crop = self.by_rel.get(move.frm)
        if crop is None or rel != move.frm:
            crop = Crop(max(self.by_id, default=-1) + 1, rel, st.st_size, st.st_mtime_ns, st.st_ino)
            self.crops_list.append(crop)
            self.by_id[crop.id], self.by_rel[rel] = crop, crop
        crop.size, crop.mtime_ns, crop.ino, crop.state = st.st_size, st.st_mtime_ns, st.st_ino, "pending"
        self._front -= 1
        crop.pos = self._front
        return crop

    def image(self, rel: str) -> Path:
        self.listed(rel)
        return below(self.root, rel)

    def listed(self, rel: str) -> Crop:
        below(self.root, rel)
        crop = self.by_rel.get(rel)
        if crop is None or crop.state != "pending":
            raise Refused(f"{rel!r} is not a crop to sort")
        return crop
