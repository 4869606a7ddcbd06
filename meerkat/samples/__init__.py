"""Samples folders: listing crops into docs CSVs (createdocs) and their format, reading image files,
the demo set."""
