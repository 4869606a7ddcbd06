"""Each stage's options come from its config: defaults written once, one precedence for all."""

import dataclasses
from pathlib import Path

import pytest
import typer.main
from conftest import make_samples

from meerkat.cli import app
from meerkat.core import config
from meerkat.core.config import BackboneConfig, DocsConfig, PreprocessConfig, RecordsConfig, RunConfig, TrainConfig
from meerkat.core.errors import UsageError
from meerkat.core.video_config import ClipsConfig, DetectionsConfig, MotionConfig, ScanConfig, parse_region

CONFIGS = (
    DocsConfig,
    BackboneConfig,
    PreprocessConfig,
    TrainConfig,
    RecordsConfig,
    RunConfig,
    MotionConfig,
    DetectionsConfig,
    ClipsConfig,
    ScanConfig,
)
COMMANDS = {
    "createdocs": (DocsConfig,),
    "preprocess": (PreprocessConfig, BackboneConfig),
    "train": (RecordsConfig, TrainConfig),
    "run": (DocsConfig, BackboneConfig, TrainConfig, RunConfig),
    "clips": (ClipsConfig, MotionConfig, DetectionsConfig),
    "scan": (ScanConfig, MotionConfig, DetectionsConfig),
}


def options_of(command: str) -> dict:
    group = typer.main.get_command(app)
    return {p.name: p for p in group.commands[command].params}


def test_every_field_is_an_option_with_help_and_a_meerkat_variable():
    for cls in CONFIGS:
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.type):
                continue
            assert f.metadata["help"], (cls.__name__, f.name)
            assert f.metadata["env"].startswith("MEERKAT_"), (cls.__name__, f.name)


@pytest.mark.parametrize("command, configs", COMMANDS.items())
def test_each_command_offers_exactly_the_fields_of_its_configs(command, configs):
    names = {f.name for cls in configs for f in dataclasses.fields(cls) if not dataclasses.is_dataclass(f.type)}
    params = options_of(command)
    assert set(params) == names
    for cls in configs:
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING and not (command == "run" and f.name == "output"):
                assert params[f.name].default == f.default, (command, f.name)  # the one default, not a copy
            if f.metadata.get("env"):
                assert params[f.name].envvar == f.metadata["env"]


def test_option_beats_variable_beats_default(tmp_path, cli):
    samples = make_samples(tmp_path / "S", train=(2, 5))

    def negatives(*args, env=None):
        result = cli("createdocs", samples, "--output", tmp_path / "o", *args, env=env)
        assert result.exit_code == 0, result.output
        return int(result.output.split("Negative training samples: ")[1].split()[0])

    assert negatives() == 5  # the default: every crop kept (--class-weights balanced weights the loss)
    assert negatives(env={"MEERKAT_BALANCE": "true"}) == 2
    assert negatives("--no-balance", env={"MEERKAT_BALANCE": "true"}) == 5


def test_build_hands_over_by_keyword_and_fills_nested_configs():
    values = {"samples": Path("S"), "output": Path("O"), "epochs": 3, "backbone": "mobilenet_v2", "unrelated": 1}
    run = config.build(RunConfig, values)
    assert run.docs == DocsConfig(Path("S"), Path("O"))
    assert run.train == TrainConfig(epochs=3)
    assert run.backbone.backbone == "mobilenet_v2" and run.backbone.weights == "imagenet"


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: TrainConfig(dropout=1.0), "--dropout must be in [0, 1), received 1.0"),
        (lambda: TrainConfig(learning_rate=0), "--learning-rate must be positive"),
        (lambda: RunConfig(DocsConfig(Path("S")), preprocessed_train_set="x"), "--preprocessed-eval-set"),
    ],
)
def test_rules_that_span_fields_are_checked_by_the_config(make, words):
    with pytest.raises(UsageError) as e:
        make()
    assert words in str(e.value)


def test_regions_are_parsed_and_bad_ones_are_usage_errors(tmp_path, cli):
    result = cli("clips", tmp_path, "--output", tmp_path / "o", "--exclude", "0,0,10")
    assert result.exit_code == 2 and "received '0,0,10'" in result.output
    cfg = config.build(MotionConfig, {"exclude": [parse_region("0,0,320,20"), (5, 5, 1, 1)]})
    assert cfg.exclude == ((0, 0, 320, 20), (5, 5, 1, 1))
