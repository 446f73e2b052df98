"""A run: its pre-flight, building, fitting and testing, resume, checkpoints, its files."""
