"""MegaDetector's results format: reading any version from 1.0 (and AddaxAI's and DeepMeerkat's
files), writing meerkat's classes into it, merging task parts."""
