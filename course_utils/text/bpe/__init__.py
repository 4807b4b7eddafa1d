"""Byte-pair encoding (chapter 03).

``toy``: the word-level BPE of Sennrich et al. (2016). ``train``: pre-tokenization and the naive and fast byte-level
trainers (same merges). ``tokenizer``: :class:`BPETokenizer` (encode, decode, save, load). ``interop``: training
front door and conversion to and from Hugging Face `tokenizers` and GPT-2/tiktoken vocabularies.
"""
