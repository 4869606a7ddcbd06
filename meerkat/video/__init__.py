"""Videos: frames, DeepMeerkat's motion detection and crops, clips and scan, DeepMeerkat's result files."""
