"""Random batches of contiguous windows for next-token training.

A batch is ``B`` windows of ``T + 1`` consecutive ids drawn at uniformly random offsets with an explicit
generator: inputs ``idx`` are the first ``T`` ids, ``targets`` the same window shifted by one.
"""

from __future__ import annotations

from typing import Callable

import torch

from course_utils.arguments import check_int


def _check_split(data: torch.Tensor, batch_size: int, block_size: int, name: str = "data") -> None:
    """One split and the batch shape, checked without reading the ids (no device sync)."""
    if not isinstance(data, torch.Tensor) or data.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of token ids")
    if data.is_floating_point() or data.is_complex() or data.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids, got {data.dtype} (.long() would truncate 1.5 to 1)")
    check_int(batch_size, "batch_size", minimum=1)
    check_int(block_size, "block_size", minimum=1)
    if len(data) < block_size + 1:
        raise ValueError(f"{name} has {len(data)} ids; need at least block_size + 1 = {block_size + 1}")


def sample_batch(data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(idx, targets)``, each ``(B, T)`` int64, from a 1-D tensor of ids ``data``."""
    _check_split(data, batch_size, block_size)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    # Positions are drawn where the generator lives (any device works), then moved to where the data is.
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator, device=generator.device)
    starts = starts.to(data.device)  # (B,)
    offsets = torch.arange(block_size + 1, device=data.device)  # (T + 1,)
    windows = data[starts[:, None] + offsets[None, :]].long()  # (B, T + 1)
    idx, targets = windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)
    return idx.to(device), targets.to(device)


def make_batch_fn(train_ids: torch.Tensor, val_ids: torch.Tensor, batch_size: int, block_size: int,
                  device: torch.device | str = "cpu") -> Callable[[str, torch.Generator],
                                                                  tuple[torch.Tensor, torch.Tensor]]:
    """A ``get_batch(split, generator)`` for :func:`course_utils.train.loop.train` over train and validation ids.
    Both splits are checked here, so a validation split too short for one window fails now, not at the first
    evaluation after many training steps."""
    _check_split(train_ids, batch_size, block_size, "train_ids")
    _check_split(val_ids, batch_size, block_size, "val_ids")
    splits = {"train": train_ids, "val": val_ids}

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in splits:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return sample_batch(splits[split], batch_size, block_size, generator, device)

    return get_batch
