"""Embeddings to a model: the dense head, the whole run (pipeline), the SavedModel export and report/run.json."""
