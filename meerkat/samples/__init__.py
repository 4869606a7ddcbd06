"""Samples folders: listing crops into docs CSVs (createdocs), reading image files, the demo set."""
