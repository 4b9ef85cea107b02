"""Training recipes, data, the plain and stacked loops, resume files, outputs."""
