"""meerkat: train DeepMeerkat's two-class crop classifiers on a workstation, a cluster or in CI."""

import logging
import os

__version__ = "0.1.0"

# TensorFlow's C++ start-up chatter buries meerkat's own output; --debug turns it back on.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
logging.getLogger("tensorflow").setLevel(logging.ERROR)
