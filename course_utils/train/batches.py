"""Random batches of contiguous windows for next-token training.

A batch is ``B`` windows of ``T + 1`` consecutive ids drawn at uniformly random offsets with an explicit
generator: inputs ``idx`` are the first ``T`` ids, ``targets`` the same window shifted by one.
"""

from __future__ import annotations

from typing import Callable

import torch


def sample_batch(data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(idx, targets)``, each ``(B, T)`` int64, from a 1-D tensor of ids ``data``."""
    if not isinstance(data, torch.Tensor) or data.dim() != 1:
        raise ValueError("data must be a 1-D tensor of token ids")
    if batch_size < 1 or block_size < 1:
        raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size} and {block_size}")
    if len(data) < block_size + 1:
        raise ValueError(f"data has {len(data)} ids; need at least block_size + 1 = {block_size + 1}")
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
                  device: torch.device | str = "cpu") -> Callable[[str, torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """A ``get_batch(split, generator)`` for :func:`course_utils.train.loop.train` over train and validation ids."""
    splits = {"train": train_ids, "val": val_ids}

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in splits:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return sample_batch(splits[split], batch_size, block_size, generator, device)

    return get_batch
