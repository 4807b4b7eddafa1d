"""course_utils: the small shared package behind the LLM course notebooks.

Each module implements one concept that a chapter teaches inline first; later chapters import it from here.
Importing the package changes no global state (no seeding, no thread settings, no downloads).

Layout and dependency graph (an arrow means "may import"; nothing imports upward, checked by
``tests/test_package_layout.py``)::

      delivery             chapters (the chapter map), colab (the Colab set-up cell and its installer), book (the
                           executed book, make book), clean (the notebook cleaner)
          |
    solutions, exercises   answers and checks for the notebooks' exercises (one module per chapter: ch01 ... ch11;
                           peft_routes: the peft functions an exercise switches off)
          |
      parallel             memory (training memory), zero (ZeRO stages), activations, precision, checkpointing,
                           accumulation, launch and processes (torch.distributed workers), payload, kernel_timing,
                           ddp, fsdp, tensor_parallel, pipeline, planner
          |
      classify             genres (the First Folio's labels), passages (splits by play and by passage), scoring (label
                           log-probabilities, shared prompt cache), prompts (k-shot templates), calibration
                           (contextual), metrics (macro-F1), features (hidden states), probe (logistic regression), bow,
                           answers (free answers parsed, decoding constrained to the labels)
          |
        rag                knowledge (a seeded fictional knowledge base with an answer key), matching, grading,
                           first_sentence, chunking, bm25, dense, hybrid, retrievers, retrieval_metrics, ann (FAISS),
                           qa (answers with token probabilities), calibration (reliability, abstention, AUROC,
                           self-consistency), auroc_comparison (DeLong, permutation)
          |
        lora               layer (LoRALinear, rsLoRA scaling), wrap (apply_lora, merge, remove, adapters),
                           memory (AdamW training memory, a meta-device Llama-2-7B), emotions (the SFT task),
                           sft (chat template, label masking, train_sft), answers (greedy answers, label scores)
          |
        rlhf               losses (Bradley-Terry, PPO clip, KL estimators, advantages, DPO), data, rollout,
                           preferences, reward_model, ppo, dpo, grpo, pipeline (labelled pairs, one evaluation for
                           every arm), hf_policy (SmolLM2 as a policy), compute (what a real run costs)
          |
       scaling             compute (N, 6ND, FLOPs), fit (power laws, the Chinchilla form, compute-optimal N and D),
                           grids, runs, sweep (the cached, parallel sweep), isoflop, emergence
          |
       evaluate            metrics, scoring (strided NLL), diversity, significance (tests, Holm), timing
          |
       generate            sampling, loop (HF decoding), kv_cache, beam_search
          |
        train              batches, loop (trainer), muon (optimiser), recipes, mlm, checkpoint
          |
        model              masks, attention, gpt, logits_fns, ngram, kneser_ney, pretrained, modern (RMSNorm, RoPE,
                           SwiGLU, GQA), llama (SmolLM2 from scratch), moe (mixture of experts)
          |
        text               corpus, codecs, bpe/ (toy, train, tokenizer, stream, specials, vocab_files, interop)
          |
    infrastructure         arguments (int and real checks), device, profile, cache, assets, optional (does an
                           optional package import), checks, switch_off (package functions refused while an answer
                           is checked), parent_watch (workers end when their starter dies), plotting, widgets
                           (top-level modules)

Each layer may import itself and any layer below it. Infrastructure modules import nothing from the package except other
infrastructure modules.

Shape notation used in every module and notebook
------------------------------------------------
B  batch size                      T  sequence length (time), T <= block_size
C  embedding width (n_embd)        V  vocabulary size (vocab_size)
H  number of attention heads       D  head size (head_size = n_embd // n_head)
So ``# (B, T, C)`` is a batch of hidden states, ``# (B, H, T, D)`` per-head queries/keys/values and
``# (B, T, T)`` or ``# (T, T)`` an attention mask or weight matrix.

Glossary of names: vocab_size, block_size, n_layer, n_head, n_embd, head_size, idx (token ids), logits,
targets, loss.
"""

__version__ = "0.1.0"
