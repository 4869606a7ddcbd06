"""Constants shared by the stages. Options a user can set, with their defaults, live in core/*config.py."""

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

# Without a Testing folder, 1 in HOLDOUT_EVERY training images is held out (DeepMeerkat's 5:1 advice).
HOLDOUT_EVERY = 6

# Where a container keeps baked-in backbone weights; searched before Keras' own cache.
WEIGHTS_DIR_ENV = "MEERKAT_WEIGHTS_DIR"

# Larger images are skipped: decoding one 20000x20000 crop takes 1.2 GB before it is shrunk to 224x224.
MAX_PIXELS = 50_000_000
# Fewer usable images than this in a class of the train or eval set stops the run.
MIN_IMAGES_PER_CLASS = 2
# `meerkat run` splits each set into shards of at most this many images: the unit of resumed work.
IMAGES_PER_SHARD = 1000
