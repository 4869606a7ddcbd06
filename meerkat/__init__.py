"""meerkat: train DeepMeerkat's two-class crop classifiers on a workstation, a cluster or in CI."""

import logging
import os

__version__ = "0.2.0"

# TensorFlow's C++ start-up chatter buries meerkat's own output; --debug turns it back on.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# FFmpeg's own lines about a broken video ("moov atom not found") would stand beside meerkat's one
# warning for it; --debug shows them.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
logging.getLogger("tensorflow").setLevel(logging.ERROR)
