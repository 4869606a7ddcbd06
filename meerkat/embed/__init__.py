"""Crops to embeddings: the frozen backbones and their weights, devices, decoding, the cache,
preprocess and its TFRecord shards."""
