"""Which devices compute: --gpus, precision and batch size, the device log, and preprocess batches
spread over several devices (the embeddings of one device).

There is no GPU here: two logical CPU devices stand in for two GPUs when spreading batches, and two
physical GPUs faked in TensorFlow's device list (two_gpus) for --gpus and the log."""

import subprocess
import sys

import pytest
from conftest import WEIGHTS

SCRIPT = f"""
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from meerkat.embed import backbones
from meerkat.core.config import BackboneConfig
from meerkat.embed.embedder import Embedder
spec = backbones.resolve(BackboneConfig("mobilenet_v2", 0.35, {str(WEIGHTS) if WEIGHTS.exists() else "none"!r}))
images = tf.random.stateless_uniform([7, 224, 224, 3], seed=[1, 2], maxval=255.0)
one = Embedder(spec, ["/CPU:0"]).embed(images).numpy()
two = Embedder(spec, ["/CPU:0", "/CPU:1"])
assert len(two.models) == 1  # all an export needs: the other copy comes with the first spread batch
split = two.embed(images).numpy()
assert len(two.models) == 2
assert two.embed(images[:1]).shape == (1, 1280)  # a batch smaller than the device count
np.testing.assert_allclose(split, one, rtol=1e-4, atol=1e-5)
print("ok", split.shape)
"""


@pytest.mark.slow
def test_batches_split_over_two_devices_match_one_device():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ok (7, 1280)" in proc.stdout


def test_precision_and_batch_size_follow_the_gpus_in_use():
    from meerkat.embed import devices

    gpu = ["/physical_device:GPU:0"]
    assert devices.choose_precision("auto", gpu) == "float16"
    assert devices.choose_precision("auto", []) == "float32"
    assert devices.choose_precision("bfloat16", gpu) == "bfloat16"
    assert devices.batch_size(None, gpu) == 128
    assert devices.batch_size(None, []) == 32
    assert devices.batch_size(64, gpu) == 64


@pytest.fixture
def two_gpus(monkeypatch):
    """A host with two GPUs, as TensorFlow's device list shows them; set_visible_devices hides them
    from get_visible_devices as it does there. The CPU stays real. Without GPUs every --gpus check
    here would read [] == []. Returns the GPUs' names."""
    import tensorflow as tf

    physical = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in range(2)]
    visible = list(physical)
    real = {f: getattr(tf.config, f) for f in ("list_physical_devices", "get_visible_devices", "set_visible_devices")}

    def list_physical_devices(device_type=None):
        return list(physical) if device_type == "GPU" else real["list_physical_devices"](device_type)

    def get_visible_devices(device_type=None):
        return list(visible) if device_type == "GPU" else real["get_visible_devices"](device_type)

    def set_visible_devices(chosen, device_type=None):
        if device_type != "GPU":
            return real["set_visible_devices"](chosen, device_type)
        assert all(d in physical for d in chosen), chosen  # TensorFlow takes only its physical devices
        visible[:] = chosen

    for f in (list_physical_devices, get_visible_devices, set_visible_devices):
        monkeypatch.setattr(tf.config, f.__name__, f)
    return [d.name for d in physical]


@pytest.mark.parametrize("limit, used", [(None, 2), (3, 2), (1, 1), (0, 0)])
def test_gpus_keeps_the_first_n_and_the_log_names_them(two_gpus, limit, used, caplog, monkeypatch):
    import logging

    from meerkat.core.config import BackboneConfig
    from meerkat.embed import backbones, devices

    monkeypatch.setattr(logging.getLogger("meerkat"), "propagate", True)  # the CLI turns it off
    caplog.set_level(logging.INFO, logger="meerkat")
    spec = backbones.resolve(BackboneConfig("mobilenet_v2", 0.35, "none", "auto", gpus=limit))
    assert devices.gpus_in_use() == two_gpus[:used]
    assert (spec.precision, devices.batch_size(None)) == (("float16", 128) if used else ("float32", 32))
    devices.log_devices(limit)
    if used:
        assert f"Using {used} GPU(s): {', '.join(two_gpus[:used])}" in caplog.text
    else:
        assert "Running on the CPU (--gpus 0)." in caplog.text


# In a fresh process: GPUs can only be hidden before TensorFlow has initialised its devices.
GPUS_ZERO = """
import tensorflow as tf
from meerkat.embed import backbones, devices
from meerkat.core.config import BackboneConfig
physical = [g.name for g in tf.config.list_physical_devices("GPU")]
assert devices.select_gpus(None) == physical
assert devices.select_gpus(0) == [] == devices.gpus_in_use()
# On a GPU host these are what --gpus 0 used to get wrong: float16 and batch 128.
assert backbones.resolve(BackboneConfig("mobilenet_v2", 0.35, "none", "auto", gpus=0)).precision == "float32"
assert devices.batch_size(None) == 32
assert devices.compute_devices() == ["/CPU:0"]
print("ok", len(physical))
"""


@pytest.mark.slow
def test_gpus_zero_chooses_float32_and_batch_32():
    proc = subprocess.run([sys.executable, "-c", GPUS_ZERO], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok")


@pytest.mark.slow
def test_the_log_names_the_device_after_gpus_applies(tmp_path, cli, two_gpus):
    from conftest import TINY, make_samples

    samples = make_samples(tmp_path / "Samples", train=(3, 3), test=(2, 2))
    result = cli("run", samples, tmp_path / "out", *TINY, "--epochs", 1, "--gpus", 0)
    assert result.exit_code == 0, result.output
    # Logged before --gpus applied, a GPU host read "Using 2 GPU(s)" for a run on the CPU.
    assert "Running on the CPU (--gpus 0)." in result.output and "GPU(s)" not in result.output
