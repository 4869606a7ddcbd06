"""Every option of every command: a value outside its declared range or type is a user error, and
each MEERKAT_* variable has one meaning.

The commands and their options are read from the Typer app, so an option is covered as soon as it
exists. Each command gets real, minimal inputs (conftest's tiny run, a small video of
tests/videos.py) on which it would succeed, so that the bad value is the only thing wrong.

The invariant, for a bad value given on the command line or in the option's variable: exit code 1
or 2, no traceback, and either exactly one `error:` line (meerkat's message, exit 1 or 2) or, for
exit 2 only, click's usage block (`Usage:` ... an `Error` box) with no `error:` line; and that
message names the option (its flag, variable or argument name) or the bad value. An empty value
is exit 2: text on the command line (click treats an empty variable as unset), a path on the command
line or in its variable (Typer would read it as `.`, the current folder; a list, an empty element).
"""

import contextlib
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import get_args

import pytest
import typer.main
from conftest import TINY, make_samples
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner
from videos import moving_square

from meerkat.cli import RETIRED, app
from meerkat.core.video_config import parse_region

GROUP = typer.main.get_command(app)
VIDEO_SIZE = (240, 160)  # tests/videos.py's default


def _takes_a_value(param) -> bool:
    # A flag without a variable (--version, --mounts-only) has no value to get wrong.
    return bool(param.envvar) or not getattr(param, "is_flag", False)


PARAMS = [("", p) for p in GROUP.params if _takes_a_value(p)] + [
    (name, p) for name, command in sorted(GROUP.commands.items()) for p in command.params if _takes_a_value(p)
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small video, a Samples folder, and a regular file that no path can go through."""
    root = tmp_path_factory.mktemp("options")
    video, _ = moving_square(root / "sq.avi", size=VIDEO_SIZE)
    blocker = root / "a-file"
    blocker.write_text("a file, so nothing can be made or found below it\n", encoding="utf-8")
    samples = make_samples(root / "Samples", train=(3, 3), test=(2, 2))
    return {"root": root, "blocker": blocker, "samples": samples, "video": video}


@pytest.fixture(scope="module")
def inputs(files, tiny_run):
    """Real inputs for every command: `files`, and a whole run (its docs, records, model and logs)."""
    return {**files, "run": tiny_run}


def valid_values(command: str, inputs: dict, out: Path) -> dict:
    """Options (by parameter name) with which `command` succeeds; `out` is a fresh folder."""
    run, tiny = inputs["run"], dict(zip(("backbone", "alpha", "weights"), TINY[1::2], strict=True))
    values = {
        "": {},  # the group's own options, before `doctor --mounts-only`
        "createdocs": {"samples": inputs["samples"], "output": out},
        "preprocess": {
            "input_path": run / "docs" / "trainingdata.csv",
            "input_dict": run / "docs" / "dict.txt",
            "output_path": out / "train",
            **tiny,
        },
        "train": {
            "train_data": run / "records" / "train",
            "eval_data": run / "records" / "eval",
            "output_dir": out,
            "epochs": 1,
        },
        "run": {"samples": inputs["samples"], "output": out, **tiny, "epochs": 1},
        "predict": {"model": run / "model", "paths": [inputs["samples"]]},
        "clips": {"videos": [inputs["video"]], "output": out},
        "scan": {"model": run / "model", "videos": [inputs["video"]], "output": out},
        "demo-samples": {"folder": out / "demo", "train_per_class": 2, "test_per_class": 1},
        "doctor": {"mounts_only": True},
        "tensorboard": {"output": run},  # never reached with a good value: it would serve until stopped
        "sort": {"crops": inputs["samples"], "samples": out / "Samples"},  # the same: it serves until stopped
    }
    assert command in values, f"give `meerkat {command}` valid inputs in valid_values()"
    return values[command]


def argv(command, values: dict) -> list[str]:
    """The command line of `values`: arguments in order, options as --name=value."""
    args, options = [], []
    for p in GROUP.commands[command].params if command else GROUP.params:
        if p.name not in values:
            continue
        value = values[p.name]
        many = value if isinstance(value, list) else [value]
        if type(p).__name__ == "TyperArgument":
            args += map(str, many)
        elif getattr(p, "is_flag", False):
            options += [p.opts[0]] if value else []
        else:
            options += [f"{p.opts[0]}={v}" for v in many]
    if not command:
        return [*options, "doctor", "--mounts-only"]
    return [command, *options, *args]


# --- bad values, by the type the option declares ----------------------------------------------------

NOT_NUMBERS = ["abc", "1,5", "0x10", "one", "nan", "inf", "-inf", "NaN", "1e999", "--"]
NOT_INTEGERS = ["1.5", "1e3", *NOT_NUMBERS]
NOT_FLAGS = ["maybe", "2", "-1", "nan", "oui", "yes please"]
MALFORMED_REGIONS = ["1,2,3", "1,2,3,4,5", "a,b,c,d", "1.5,0,10,10", "0;0;10;10", "nan,0,1,1", ",,,", "0,0,1e3,9"]
# scan and predict load the model on every call, seconds each: the values that only a video or a file
# can refuse are tried on clips for the regions (tests/test_scan.py has scan's), and once each here.
LOADS_A_MODEL = {"scan", "predict"}


def _kind(param):
    descriptor = param.type_descriptor
    if getattr(param, "is_flag", False):
        return bool
    if descriptor.parameter_info.parser is not None:
        return descriptor.parameter_info.parser
    return get_args(descriptor.annotation)[0] if descriptor.is_list else descriptor.annotation


def categories(command: str, param) -> list[str]:
    """The kinds of bad value `param` is tried with: one test case each, so that each is tried."""
    kind = _kind(param)
    if kind is bool:
        return ["not a boolean"]
    if kind is parse_region:
        return ["malformed", "negative or empty"] + ([] if command in LOADS_A_MODEL else ["outside the frame"])
    if kind is int:
        return ["not an integer", "below its range", "above its range"]
    if kind is float:
        return ["not a finite number", "below its range"] + (["above its range"] if param.max is not None else [])
    if kind is str:
        return ["empty", "below a file"]
    if kind is Path:
        return ["empty", "below a file"] + (["empty variable"] if param.envvar else [])
    raise AssertionError(f"{command} {param.opts[0]}: say here which values of the type {kind} are bad")


def bad_values(param, category: str, inputs: dict, on_command_line: bool) -> st.SearchStrategy[str]:
    """Values of `category` for `param`; click reads an empty variable as unset, so "" only on the command line."""
    width, height = VIDEO_SIZE
    size = st.integers(1, 10**6)
    kind = _kind(param)
    if category == "not a boolean":
        return st.sampled_from(NOT_FLAGS)
    if category == "malformed":
        return st.sampled_from(MALFORMED_REGIONS + ([""] if on_command_line else []))
    if category == "negative or empty":
        negative = st.tuples(st.integers(-(10**6), -1), st.integers(0, 99), size, size)
        empty = st.tuples(st.integers(0, 99), st.integers(0, 99), st.integers(-(10**6), 0), size)
        regions = negative | empty | empty.map(lambda r: (r[1], r[0], r[3], r[2]))
        return regions.map(lambda r: ",".join(map(str, r)))
    if category == "outside the frame":
        right = st.tuples(st.integers(width, 10**12), st.integers(0, height - 1), size, size)
        below = st.tuples(st.integers(0, width - 1), st.integers(height, 10**12), size, size)
        return (right | below).map(lambda r: ",".join(map(str, r)))
    if category == "not an integer":
        return st.sampled_from(NOT_INTEGERS + ([""] if on_command_line else []))
    if category == "not a finite number":
        return st.sampled_from(NOT_NUMBERS + ([""] if on_command_line else []))
    if category == "below its range":
        if kind is int:
            return st.integers(max_value=-1 if param.min is None else param.min - 1).map(str)
        low = 0.0 if param.min is None else param.min
        return st.floats(max_value=low, exclude_max=True, allow_nan=False, allow_infinity=False).map(repr)
    if category == "above its range":
        if kind is int:  # beyond int64 where no maximum is declared: numpy and TensorFlow take no such number
            return st.integers(min_value=2**63 if param.max is None else param.max + 1).map(str)
        return st.floats(min_value=param.max, exclude_min=True, allow_nan=False, allow_infinity=False).map(repr)
    if category == "empty":
        return st.just("") if on_command_line else st.nothing()
    if category == "empty variable":  # the whole variable, or one path of a list of them
        return st.sampled_from(["", os.pathsep] if param.nargs == -1 else [""])
    assert category == "below a file"
    # Below a regular file no input is found and no output can be made.
    return st.just(f"{inputs['blocker']}/{param.name}")


def assert_refused(result, param, value: str, clues: list[str]) -> None:
    out = result.output
    assert result.exit_code in (1, 2), out
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    if errors:
        assert len(errors) == 1, out
        message = errors[0]
    else:
        assert result.exit_code == 2 and out.startswith("Usage:") and "Error" in out, out
        message = out
    names = [*param.opts, param.name.upper(), param.envvar, *clues]
    if value.strip():
        names.append(value)
    assert any(n and n in message for n in names), f"the message names neither {param.opts[0]} nor {value!r}:\n{out}"


def refuse(inputs: dict, command: str, param, category: str, data) -> None:
    """Give `command` one bad value of `param`, on the command line or in its variable."""
    on_command_line = category == "empty" or not param.envvar
    if category == "empty variable":
        on_command_line = False
    elif not on_command_line and category != "not a boolean":  # a flag takes no value on the command line
        on_command_line = data.draw(st.booleans(), label="on the command line")
    value = data.draw(bad_values(param, category, inputs, on_command_line), label=param.name)
    values = valid_values(command, inputs, Path(tempfile.mkdtemp(dir=inputs["root"])))
    env = None
    if on_command_line:
        many = param.multiple or param.nargs == -1
        good = values.get(param.name, []) if category == "empty" else []  # an empty one after good ones
        values[param.name] = [*good, value] if many else value
    else:
        values.pop(param.name, None)
        env = {param.envvar: value}
    # In a folder of its own: a path read as `.` must not write into the checkout.
    with contextlib.chdir(tempfile.mkdtemp(dir=inputs["root"])):
        result = CliRunner().invoke(app, argv(command, values), env=env)
    assert_refused(result, param, value, [str(inputs["blocker"])] if category == "below a file" else [])
    if category.startswith("empty"):
        assert result.exit_code == 2, result.output


CASES = [(c, p, category) for c, p in PARAMS for category in categories(c, p)]


def _cases(costly: bool) -> dict:
    cases = [case for case in CASES if (case[0] in LOADS_A_MODEL) == costly]
    return {"argvalues": cases, "ids": [f"{c or 'meerkat'}-{p.name}-{k.replace(' ', '-')}" for c, p, k in cases]}


@pytest.mark.slow
@pytest.mark.parametrize("command, param, category", **_cases(costly=False))
@settings(derandomize=True, max_examples=2, deadline=None)
@given(data=st.data())
def test_a_value_outside_an_options_range_or_type_is_a_user_error(inputs, command, param, category, data):
    refuse(inputs, command, param, category, data)


@pytest.mark.slow
@pytest.mark.parametrize("command, param, category", **_cases(costly=True))
@settings(derandomize=True, max_examples=1, deadline=None)
@given(data=st.data())
def test_a_bad_value_for_a_command_that_loads_a_model_is_a_user_error(inputs, command, param, category, data):
    refuse(inputs, command, param, category, data)


def test_the_valid_values_are_valid(files, tmp_path):
    """The inputs the test above starts from: the quick commands run with them succeed."""
    for command in ("clips", "createdocs", "demo-samples"):
        values = valid_values(command, {**files, "run": tmp_path / "no run"}, tmp_path / command)
        result = CliRunner().invoke(app, argv(command, values))
        assert result.exit_code == 0, result.output


# --- one meaning a variable ---------------------------------------------------------------------------

# Variables that several commands read with different help, because each command does something else
# with the same thing; any other variable read by two options must be read with the same help (the
# same config field), or it would mean two things.
SAME_THING = {
    "MEERKAT_OUTPUT": "the run folder: createdocs and run write it, doctor checks it, tensorboard shows its logs",
    "MEERKAT_SAMPLES": "the Samples folder: createdocs and run read it, doctor checks it, sort moves crops into it",
    "MEERKAT_INPUT_DICT": "createdocs' dict.txt: preprocess labels the records with it, train checks them against it",
    "MEERKAT_THRESHOLD": "the operating point, score_positive >= T is positive: in predict, clips --model and scan",
    "MEERKAT_SHARD_INDEX": "this array task's share: of the docs CSV in preprocess, of the videos or boxes in scan",
    "MEERKAT_NUM_SHARDS": "the number of array tasks sharing the work: in preprocess and in scan",
    "MEERKAT_WORKERS": "how much runs at once on this machine: videos scanned, or with --detections images decoded",
}


def test_each_variable_has_one_meaning():
    helps = defaultdict(set)
    for _, param in PARAMS:
        if param.envvar:
            helps[param.envvar].add(param.help)
    shared = {name for name, texts in helps.items() if len(texts) > 1}
    two_meanings = {name: sorted(helps[name]) for name in shared - set(SAME_THING)}
    assert not two_meanings, f"give each meaning its own variable, or list it in SAME_THING: {two_meanings}"
    assert set(SAME_THING) <= shared, "SAME_THING lists a variable that no longer means one thing in two places"
    assert not set(RETIRED) & set(helps), "a retired variable is read again"


def test_a_retired_variable_is_named_with_its_successors(cli):
    result = cli("doctor", "--mounts-only", env={"MEERKAT_MODEL": "runs/h/model", "MEERKAT_BATCH_SIZE": "8"})
    assert result.exit_code == 0, result.output
    assert "warning: $MEERKAT_MODEL is no longer read; set MEERKAT_CLIPS_MODEL (clips --model)" in result.output
    assert "warning: $MEERKAT_BATCH_SIZE is no longer read; set MEERKAT_TRAIN_BATCH_SIZE" in result.output


def test_infinity_is_refused_where_a_range_has_an_open_end(cli, files, tmp_path):
    for value in ("inf", "1e999"):
        result = cli("clips", files["video"], "--output", tmp_path, f"--fps={value}")
        assert result.exit_code == 2 and "--fps" in result.output and "finite" in result.output, result.output
