"""Defaults shared by every stage. Each one the CLI exposes can be overridden by a MEERKAT_* variable."""

# Class order of the model: column 0 of its softmax is always the positive class.
LABELS = ("positive", "negative")

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

DEFAULT_BACKBONE = "efficientnet_v2_b0"
DEFAULT_SEED = 42
# Without a Testing folder, 1 in HOLDOUT_EVERY training images is held out (DeepMeerkat's 5:1 advice).
HOLDOUT_EVERY = 6

# Bump when decode/resize/normalisation changes: records made before are not comparable.
PREPROCESSING_VERSION = 1

# Where a container keeps baked-in backbone weights; searched before Keras' own cache.
WEIGHTS_DIR_ENV = "MEERKAT_WEIGHTS_DIR"
