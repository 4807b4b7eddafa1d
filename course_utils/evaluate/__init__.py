"""Evaluation: units of quality (perplexity, bits per byte), strided scoring of long texts, diversity of samples.

Modules: ``metrics``, ``scoring``, ``diversity``, ``significance`` (exact paired tests). May import anything below it.
"""
