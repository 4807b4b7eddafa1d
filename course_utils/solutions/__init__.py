"""Reference solutions to the notebooks' exercises, one module per chapter (kept out of the learner's way)."""
