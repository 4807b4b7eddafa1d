"""Models: attention and its masks, the course GPT, the n-gram baseline, and loaders for real pretrained models.

Modules: ``masks`` (one function per mask kind), ``attention`` (scaled dot-product attention from scratch), ``gpt``
(the tiny decoder-only transformer), ``logits_fns`` (one calling convention for our GPT and Hugging Face models),
``ngram`` (count-based n-gram LM, add-k), ``kneser_ney`` (the interpolated Kneser-Ney n-gram LM), ``pretrained``
(SmolLM2 and MiniLM from offline packages), ``modern`` (RMSNorm, RoPE, SwiGLU, grouped-query attention's key/value
repetition), ``llama`` (SmolLM2's Llama-style architecture from scratch, loading the real weights), ``moe`` (a tiny
mixture of experts for the course GPT).
Imports only :mod:`course_utils.text` and the infrastructure modules.
"""
