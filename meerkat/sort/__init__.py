"""`meerkat sort`: a local page to sort crops into Samples/Training/<class>/, the model's guess first."""
