"""Chapter 06: LoRA from scratch: the LoRALinear layer, wrapping a whole model, merging, adapters, memory accounting.

Modules: ``layer`` (LoRALinear, Hu et al. 2021; rsLoRA scaling, Kalajdzievski 2023), ``wrap`` (apply_lora, merge,
remove, save/load adapters; peft's conventions), ``memory`` (AdamW training memory from real parameter shapes, a
meta-device Llama-2-7B), ``emotions`` (the instruction task the course makes itself: held-out events, answer
matching), ``sft`` (chat-template examples, label masking, the response-only loss, ``train_sft``) and ``answers``
(batched greedy answers, label log-probabilities with a shared KV cache).
"""
