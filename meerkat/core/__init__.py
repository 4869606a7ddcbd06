"""The shared ground: configs and settings, errors, logging, progress, file ownership and atomic
writes, locks, SLURM arrays, code versions."""
