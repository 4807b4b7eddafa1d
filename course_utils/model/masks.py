"""Attention masks: one function per kind, all in one convention.

Convention: a mask is a **boolean "may attend" tensor**, ``mask[..., i, j] = True`` when query position ``i`` may
attend to key position ``j``. Its last two dimensions are ``(T, T)`` (queries, keys); leading dimensions broadcast,
so ``(T, T)``, ``(B, T, T)`` and ``(B, 1, T, T)`` (one mask shared by all heads) are all valid. This is the
convention of ``torch.nn.functional.scaled_dot_product_attention`` with a boolean ``attn_mask`` and of Hugging Face's
``masking_utils.sdpa_mask``; :func:`to_additive` converts to the older additive form (0 = keep, ``-inf`` = block).

Kinds and the model families that use them:

* :func:`causal_mask`: GPT-style decoders (Radford et al., 2018/2019); position ``i`` sees ``j <= i``.
* :func:`bidirectional_mask`: BERT-style encoders (Devlin et al., 2019, "BERT"); everything sees everything.
* :func:`key_padding_mask` / :func:`padding_mask`: batches of unequal length, padded on the right or the left.
* :func:`prefix_lm_mask`: a bidirectional prefix followed by a causal continuation (Raffel et al., 2020, "Exploring
  the Limits of Transfer Learning with a Unified Text-to-Text Transformer" (T5), the prefix-LM variant).
* :func:`sliding_window_mask`: local attention. Causal (decoders; Jiang et al., 2023, "Mistral 7B", ``W = 4096``):
  the ``window`` most recent positions, itself included, which the flash-attn library (2.3 and later) writes
  ``window_size=(W - 1, 0)``, as Hugging Face does (the Mistral paper writes positions ``i - W`` to ``i``).
  Symmetric (encoders; Beltagy et al., 2020, "Longformer"): ``window // 2`` positions on each side.
* :func:`combine`: logical AND of masks, e.g. causal AND padding.
* :func:`from_hf_attention_mask`: Hugging Face's 2-D ``attention_mask`` (1 = real token, 0 = padding) as a 4-D mask,
  and :func:`position_ids_from_attention_mask`, the position ids Hugging Face derives from it for left padding.

Left out: block-sparse and dilated patterns, chunked attention, masks with a key cache longer than the queries
(``q_offset``), and additive biases such as ALiBi that are not simply allowed/blocked.
"""

from __future__ import annotations

import torch

from course_utils.arguments import check_int

SIDES = ("right", "left")


def _check_length(T: int) -> int:
    return check_int(T, "T (sequence length)", minimum=1, allowed="a positive int")


def _arange(T: int, device: torch.device | str | None) -> tuple[torch.Tensor, torch.Tensor]:
    pos = torch.arange(T, device=device)
    return pos[:, None], pos[None, :]  # query index i as (T, 1), key index j as (1, T)


def check_mask(mask: torch.Tensor, name: str = "mask") -> None:
    """Raise ``TypeError`` unless ``mask`` is a boolean tensor with at least 2 dimensions, last two equal."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{name} must be boolean (True = may attend), got dtype {mask.dtype}; convert an additive float mask "
            "with masks.from_additive and a Hugging Face 0/1 attention_mask with masks.from_hf_attention_mask"
        )
    if mask.dim() < 2 or mask.shape[-1] != mask.shape[-2]:
        raise ValueError(f"{name} must end in a square (T, T) query-by-key block, got shape {tuple(mask.shape)}")


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(T, T)``: query ``i`` may attend to keys ``j <= i`` (lower triangle, diagonal included)."""
    T = _check_length(T)
    i, j = _arange(T, device)
    return j <= i  # (T, T)


def bidirectional_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(T, T)`` all True: every position attends to every position."""
    T = _check_length(T)
    return torch.ones(T, T, dtype=torch.bool, device=device)  # (T, T)


def prefix_lm_mask(T: int, prefix_len: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(T, T)``: keys in the prefix ``j < prefix_len`` are visible to every query, the rest causally.

    ``prefix_len = 0`` gives the causal mask, ``prefix_len = T`` the bidirectional one.
    """
    T = _check_length(T)
    prefix_len = check_int(prefix_len, "prefix_len", minimum=0, maximum=T, allowed=f"an int in [0, T={T}]")
    i, j = _arange(T, device)
    return (j <= i) | (j < prefix_len)  # (T, T)


def sliding_window_mask(T: int, window: int, causal: bool = True,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """``(T, T)`` local attention with a window of ``window`` positions.

    ``causal=True`` (Mistral 7B, Gemma 2's local layers): query ``i`` sees the ``window`` most recent positions,
    itself included, ``i - window < j <= i``; the flash-attn library writes this ``window_size=(window - 1, 0)``
    (left, right, both inclusive). ``window >= T`` gives back the causal mask.
    ``causal=False`` (Longformer's encoder, symmetric): ``window // 2`` positions on each side plus itself,
    ``|i - j| <= window // 2``; flash-attn's ``window_size=(window // 2, window // 2)``.
    """
    T = _check_length(T)
    window = check_int(window, "window", minimum=1, allowed="an int >= 1 (the number of positions each query sees)")
    i, j = _arange(T, device)
    if causal:
        return (j <= i) & (j > i - window)  # (T, T)
    return (i - j).abs() <= window // 2  # (T, T)


def _check_lengths(lengths, T: int) -> torch.Tensor:
    T = _check_length(T)
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.numel() == 0:
        raise ValueError(f"lengths must be a non-empty 1-D sequence (one length per row), got shape "
                         f"{tuple(lengths.shape)}")
    if lengths.is_floating_point() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be integers, got dtype {lengths.dtype}")
    if (lengths < 1).any() or (lengths > T).any():
        raise ValueError(f"every length must be in [1, T={T}], got {lengths.tolist()}")
    return lengths


def key_padding_mask(lengths, T: int, side: str = "right", device: torch.device | str | None = None) -> torch.Tensor:
    """``(B, T)``: True at real tokens, False at padding, for rows of the given ``lengths`` padded to ``T``.

    ``side="right"``: tokens first, padding after (training, scoring). ``side="left"``: padding first, tokens last
    (batched generation, so that every row's newest token sits in the last column). Equals a Hugging Face
    ``attention_mask`` as booleans.
    """
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    lengths = _check_lengths(lengths, T).to(device)
    pos = torch.arange(T, device=device)[None, :]  # (1, T)
    if side == "right":
        return pos < lengths[:, None]  # (B, T)
    return pos >= T - lengths[:, None]  # (B, T)


def padding_mask(lengths, T: int, side: str = "right", device: torch.device | str | None = None) -> torch.Tensor:
    """``(B, 1, T, T)``: every query may attend to the real tokens of its own row, never to padding keys.

    Only key columns are blocked: queries at padding positions still attend to the real tokens (their outputs
    are ignored by the loss), so no row of the mask is empty. Combine with :func:`causal_mask` for decoders.
    """
    keys = key_padding_mask(lengths, T, side, device)  # (B, T)
    return keys[:, None, None, :].expand(-1, 1, T, T)  # (B, 1, T, T)


def combine(*masks: torch.Tensor) -> torch.Tensor:
    """Logical AND of boolean masks, broadcast to a common shape: a pair is allowed only if every mask allows it."""
    if not masks:
        raise ValueError("combine needs at least one mask")
    for n, mask in enumerate(masks):  # a (B, 1, 1, T) key mask is fine here as long as the result is square
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"mask {n} must be a boolean tensor (True = may attend), got "
                            f"{mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__}")
    try:
        shape = torch.broadcast_shapes(*(m.shape for m in masks))
    except RuntimeError as err:
        raise ValueError(f"masks of shapes {[tuple(m.shape) for m in masks]} do not broadcast: {err}") from None
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ValueError(f"combined masks must end in a square (T, T) block, got shape {tuple(shape)}")
    out = masks[0].expand(shape)
    for mask in masks[1:]:
        out = out & mask
    return out


def to_additive(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Boolean mask -> additive float mask: 0.0 where allowed, ``-inf`` where blocked (added to the scores)."""
    check_mask(mask)
    if not dtype.is_floating_point:
        raise TypeError(f"an additive mask needs a floating dtype, got {dtype}")
    zeros = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return zeros.masked_fill(~mask, float("-inf"))


def from_additive(mask: torch.Tensor) -> torch.Tensor:
    """Additive float mask -> boolean. 0 means allowed; ``-inf`` or a huge negative value (Hugging Face uses
    ``torch.finfo(dtype).min``) means blocked. Any other value is a bias, not a mask, and raises ``ValueError``."""
    if not isinstance(mask, torch.Tensor) or not mask.is_floating_point():
        raise TypeError(f"an additive mask is a floating-point tensor, got "
                        f"{mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__}")
    allowed = mask == 0
    blocked = mask <= torch.finfo(mask.dtype).min / 2  # -inf included
    if not (allowed | blocked).all():
        bad = mask[~(allowed | blocked)].flatten()[:3].tolist()
        raise ValueError(f"additive mask has values other than 0 and -inf (e.g. {bad}); that is a bias (like ALiBi) "
                         "and has no boolean equivalent")
    return allowed


def _check_hf_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2:
        raise ValueError("attention_mask must be a (B, T) tensor of 0/1 (Hugging Face convention, 1 = real token), "
                         f"got {getattr(attention_mask, 'shape', type(attention_mask).__name__)}")
    if attention_mask.is_floating_point():
        raise TypeError(f"attention_mask must hold integers 0/1 or booleans, got {attention_mask.dtype}")
    if not ((attention_mask == 0) | (attention_mask == 1)).all():
        raise ValueError("attention_mask values must be 0 (padding) or 1 (real token)")
    return attention_mask.bool()


def from_hf_attention_mask(attention_mask: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """Hugging Face ``attention_mask`` (B, T), 1 = keep, 0 = padding -> our ``(B, 1, T, T)`` boolean mask.

    Decoders (``causal=True``) get causal AND key padding, which is what Hugging Face builds internally for
    ``sdpa``; encoders (``causal=False``) get bidirectional AND key padding. Rows of left-padding queries can end
    up empty under the causal mask; SDPA returns zeros there (PyTorch 2.5 and later on CPU and CUDA; the MPS backend
    returned NaN in some releases) and the outputs at padding positions are ignored.
    """
    keys = _check_hf_mask(attention_mask)  # (B, T)
    B, T = keys.shape
    base = causal_mask(T, keys.device) if causal else bidirectional_mask(T, keys.device)  # (T, T)
    return combine(base, keys[:, None, None, :])  # (B, 1, T, T)


def position_ids_from_attention_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` position ids that count real tokens only: ``cumsum(mask) - 1``, padding set to 1.

    With left padding, the first real token of every row gets position 0, as if the row were unpadded; for real
    tokens this is what Hugging Face ``generate`` computes. At padding, transformers 5 writes 0 and older versions
    wrote 1; the value is arbitrary, since no real token attends to padding.
    """
    keys = _check_hf_mask(attention_mask).long()  # (B, T)
    return (keys.cumsum(dim=1) - 1).masked_fill(keys == 0, 1)  # (B, T)


def mask_bytes(T: int, batch: int = 1, heads: int = 1, dtype: torch.dtype = torch.bool) -> int:
    """Bytes a materialised ``(batch, heads, T, T)`` mask of ``dtype`` occupies (it grows as T squared)."""
    T = _check_length(T)
    batch, heads = (check_int(value, name, minimum=1, allowed="a positive int")  # NaN, 2.5 or -1 gave a byte count
                    for name, value in (("batch", batch), ("heads", heads)))
    itemsize = torch.empty((), dtype=dtype).element_size()
    return int(batch * heads * T * T * itemsize)
