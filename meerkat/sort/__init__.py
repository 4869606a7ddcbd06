"""`meerkat sort`: a local page to sort crops into Samples/Training/<class>/, the model's guess first
(the page's HTML, CSS and JavaScript are in static/)."""
