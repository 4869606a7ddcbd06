"""What a finished run shows: metrics and thresholds, the report page, TensorBoard's eval summaries, the model card."""
