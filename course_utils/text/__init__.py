"""Text: the corpus, and the ways to turn text into ids (characters, bytes, byte-pair encoding).

Modules: ``corpus`` (Shakespeare split by whole plays), ``codecs`` (character and byte ids), ``bpe`` (byte-pair
encoding: the word-level toy, the trainers, the tokenizer, and interoperability with `tokenizers` and tiktoken).
Imports only the infrastructure modules of :mod:`course_utils`.
"""
