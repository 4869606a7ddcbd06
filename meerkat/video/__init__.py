"""Videos: frames, DeepMeerkat's motion detection and crops, the walk clips and scan share, the result files."""
