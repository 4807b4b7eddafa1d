"""Generation: from logits to tokens, and the loops that produce text.

Modules: ``sampling`` (temperature, top-k, top-p, min-p, penalties, constraints), ``loop`` (our decoding loop for a
Hugging Face model with its KV cache), ``kv_cache`` (a KV cache for the course GPT), ``beam_search``.
Imports :mod:`course_utils.model` and below, never :mod:`course_utils.train`-specific state.
"""
