"""An exported model applied: scoring crops (scorer), predict, and reading a model card's threshold."""
