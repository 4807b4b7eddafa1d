"""Byte-pair encoding (chapter 03).

``toy``: the word-level BPE of Sennrich et al. (2016). ``train``: pre-tokenization and the naive and fast byte-level
trainers (same merges; ties broken by the byte-string rule of Stanford CS336 by default, or by ids).
``tokenizer``: :class:`BPETokenizer` (encode, decode, save, load; from someone else's vocabulary and merges, or from
tiktoken-style ranks). ``specials``: tiktoken's ``allowed_special``/``disallowed_special`` rules. ``stream``:
``encode_iterable``, lazy encoding of a stream of text chunks. ``vocab_files``: reading tiktoken rank files (cl100k).
``interop``: the training front door and conversion to and from Hugging Face `tokenizers` and GPT-2 vocabularies.
"""
