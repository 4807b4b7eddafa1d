"""Scoring a text with a language model: total negative log-likelihood over a long sequence, in sliding windows.

A model with a context of ``window`` tokens cannot see a whole play at once. We slide a window over the ids with
step ``stride`` and score only the tokens that are new in each window, so every token after the first is scored
exactly once with at least ``window - stride`` tokens of context (except at the start). This is the "strided
perplexity" evaluation described in the Hugging Face transformers documentation ("Perplexity of fixed-length
models", with GPT-2 as its example model). The same function serves the course's tiny GPT and any Hugging Face
causal LM through ``logits_fn``.

Left out: scoring the very first token (it has no context; we count the text units it covers as unscored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from course_utils.arguments import check_int
from course_utils.model.logits_fns import LogitsFn, gpt_logits_fn, hf_logits_fn  # noqa: F401  (re-exported)


@dataclass
class TextScore:
    total_nats: float
    n_tokens: int  # tokens scored
    # (n_tokens,) float64 on the CPU: -log p of each scored token, in text order (ids[1:] for score_ids), so that a
    # difference between two models can be given a standard error over blocks of the text; None when not recorded
    token_nats: torch.Tensor | None = None

    @property
    def nats_per_token(self) -> float:
        return self.total_nats / self.n_tokens

    def bits_per(self, n_units: int) -> float:
        """Bits per character or byte, given how many units of text the scored tokens cover."""
        n_units = check_int(n_units, "n_units", minimum=1,  # NaN gave NaN
                            allowed="an int >= 1 (characters or bytes of the text)")
        return self.total_nats / math.log(2) / n_units


@torch.no_grad()
def score_ids(logits_fn: LogitsFn, ids: torch.Tensor, window: int, stride: int | None = None,
              device: torch.device | str = "cpu", progress: bool = True) -> TextScore:
    """Sum of -log p(ids[t] | ids[<t]) over t >= 1, computed in windows of at most ``window`` ids.

    The returned score also keeps each of those terms (``token_nats[t - 1]`` for ids[t]).

    Each window scores the next ``n_new = min(stride, window - 1)`` ids not scored yet and fills the rest of the
    window with the ids just before them as context. With 10 ids a..j, ``window=4`` and ``stride=2``::

        ids        a  b  c  d  e  f  g  h  i  j
        window 1  [a  b  c]                       scores b, c   (a has no context and is never scored)
        window 2     [b  c  d  e]                 scores d, e   with context b c, then b c d
        window 3           [d  e  f  g]           scores f, g
        window 4                 [f  g  h  i]     scores h, i
        window 5                    [g  h  i  j]  scores j      (the last window ends at the text's end)

    In window [start, end) the model's output at position p predicts ids[start + p + 1], so the predictions of the
    new ids ids[first_new:end] are the outputs at positions first_new - start - 1 ... end - start - 2. Every id
    after the first is scored exactly once, and (after the first window) with at least ``window - n_new`` ids of
    context. ``tests/test_ngram_metrics_evaluation.py`` checks this picture on a model whose confidence depends
    on how much context it sees.
    """
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
        raise ValueError("ids must be a 1-D tensor of token ids")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:  # .long() truncated 1.5 to 1
        raise TypeError(f"ids must hold integer token ids, got {ids.dtype}")
    if len(ids) < 2:
        raise ValueError(f"need at least 2 ids to score a prediction, got {len(ids)}")
    window = check_int(window, "window", minimum=2)  # inf scored nothing
    stride = window if stride is None else \
        check_int(stride, "stride", minimum=1, maximum=window, allowed=f"an int in [1, window={window}]")
    n_new = min(stride, window - 1)  # ids scored per window: a window of W ids holds only W - 1 predictions
    pieces = []  # per-window (end - first_new,) losses, float64 on the CPU
    first_new = 1  # index of the first id not scored yet; ids[0] is never scored (it has no context)
    n_windows = math.ceil((len(ids) - 1) / n_new)
    for _ in tqdm(range(n_windows), desc="scoring", disable=not progress, leave=False):
        end = min(first_new + n_new, len(ids))  # this window scores ids[first_new:end]
        start = max(0, end - window)  # and sees ids[start:end]
        n_context = first_new - start  # ids before the first new one inside the window (>= 1)
        chunk = ids[start:end].to(device).long().unsqueeze(0)  # (1, end - start)
        logits = logits_fn(chunk)[0, n_context - 1:-1].float()  # (end - first_new, V): predictions of new ids
        targets = chunk[0, n_context:]  # (end - first_new,): the new ids themselves
        pieces.append(F.cross_entropy(logits, targets, reduction="none").cpu().double())  # MPS has no float64
        first_new = end
    token_nats = torch.cat(pieces)  # (len(ids) - 1,): one loss per id after the first, in text order
    return TextScore(token_nats.sum().item(), len(token_nats), token_nats)


def hf_bits_per_byte(model: torch.nn.Module, tokenizer, text: str, window: int = 512, stride: int | None = None,
                     progress: bool = True) -> tuple[float, TextScore, int]:
    """Bits per UTF-8 byte of ``text`` under a Hugging Face causal LM; returns (bits/byte, score, bytes scored).

    The bytes covered by the first token are not scored (it has no context), so they are left out of the count.
    """
    if not text:
        raise ValueError("text is empty")
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])  # (N,)
    first_token_bytes = len(tokenizer.decode(ids[:1]).encode("utf-8"))
    n_bytes = len(text.encode("utf-8")) - first_token_bytes
    device = next(model.parameters()).device
    score = score_ids(hf_logits_fn(model), ids, window, stride, device=device, progress=progress)
    return score.bits_per(n_bytes), score, n_bytes
