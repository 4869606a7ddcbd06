"""Embeddings to a model: the training sets and their split, the dense head and its training
(checkpoints, history), the whole run (pipeline), the SavedModel export and report/run.json."""
