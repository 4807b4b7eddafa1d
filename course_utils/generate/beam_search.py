"""Beam search: keep the ``num_beams`` most probable partial continuations instead of one (greedy) or a sample.

At every step each beam is extended by every token; of the ``num_beams x V`` candidates we keep the best ``num_beams``
by total log-probability. A candidate ending in ``eos_token_id`` that ranks among those best ``num_beams`` leaves the
beam and becomes a finished hypothesis (one ranked lower is dropped), and the beam is refilled to ``num_beams`` with
the next best candidates that do not end in EOS, taken from the top ``2 x num_beams`` (as ``transformers`` does); a
finished hypothesis is scored by ``sum log p / length ** length_penalty`` (length = generated tokens, EOS included),
so longer answers are not punished merely for having more factors below one. The search stops after ``max_new_tokens``
or once ``num_beams`` hypotheses are finished and the best running beam can no longer beat the worst of them at its
current length (the "heuristic" stopping rule of ``transformers``' default ``early_stopping=False``). The result also
records ``min_gap``, the smallest score difference at any decision the search took (the last kept candidate against
the first left out, the rank that admits an EOS candidate, which finished hypotheses survive, the stopping test, the
final pick; the order among kept beams decides nothing): below rounding level, another numerical path may decide the
other way.

References: the classic algorithm as used in neural MT (I. Sutskever, O. Vinyals, Q. V. Le, "Sequence to Sequence
Learning with Neural Networks", 2014; Y. Wu et al., "Google's Neural Machine Translation System", 2016, for length
normalisation, there ``((5 + L) / 6) ** alpha``; we use ``transformers``' simpler ``L ** alpha``); C. Meister,
R. Cotterell, T. Vieira, "If Beam Search is the Answer, What was the Question?", 2020.

The model is any ``logits_fn(ids (K, T)) -> next-token logits (K, V)``; we recompute the whole prefix each step
(clear, not fast). Left out: a KV cache reordered by beam, batches of prompts, diverse/constrained beam search,
sampling inside beams, n-gram blocking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from course_utils.arguments import check_int, check_real
from course_utils.model.logits_fns import gpt_next_logits_fn, hf_next_logits_fn  # noqa: F401  (re-exported)


@dataclass
class BeamResult:
    ids: torch.Tensor  # (T_prompt + n,) best sequence, prompt included
    score: float  # its length-normalised log-probability
    hypotheses: list[tuple[float, torch.Tensor]] = field(default_factory=list)  # all candidates, best first
    min_gap: float = math.inf  # smallest score difference at any decision of the search (a near-tie if tiny)


@torch.no_grad()
def beam_search(logits_fn: Callable[[torch.Tensor], torch.Tensor], prompt: torch.Tensor, num_beams: int,
                max_new_tokens: int, eos_token_id: int | None = None, length_penalty: float = 1.0) -> BeamResult:
    """Best continuation of ``prompt`` (T,) under ``logits_fn`` found with ``num_beams`` beams."""
    if not isinstance(prompt, torch.Tensor) or prompt.dim() != 1 or prompt.numel() == 0:
        raise ValueError("prompt must be a non-empty 1-D tensor of token ids (one sequence, no batch dimension)")
    if prompt.is_floating_point() or prompt.is_complex() or prompt.dtype == torch.bool:
        raise TypeError(f"prompt must hold integer token ids (torch.long), got {prompt.dtype}")
    num_beams = check_int(num_beams, "num_beams", minimum=1)
    max_new_tokens = check_int(max_new_tokens, "max_new_tokens", minimum=1)
    if eos_token_id is not None:  # checked, kept as given
        check_int(eos_token_id, "eos_token_id", minimum=0, allowed="None or a token id (an int >= 0)")
    length_penalty = check_real(length_penalty, "length_penalty",  # NaN made every score NaN; -inf divided by zero
                                allowed="a finite number (0 = sum of log-probs, 1 = their mean)")
    prompt_length = prompt.numel()
    beams = prompt[None, :]  # (K, T), one beam to start with
    # scores live on the CPU in float64 (MPS has no float64); only the ids go to the model's device
    scores = torch.zeros(1, dtype=torch.float64)  # (K,) summed log-probabilities
    finished: list[tuple[float, torch.Tensor]] = []
    min_gap = math.inf
    for step in range(1, max_new_tokens + 1):
        logprobs = torch.log_softmax(logits_fn(beams).cpu().double(), dim=-1)  # (K, V)
        vocab_size = logprobs.shape[-1]
        candidates = (scores[:, None] + logprobs).view(-1)  # (K * V,)
        top_scores, top_flat = torch.topk(candidates, min(2 * num_beams, candidates.numel()))
        next_beams, next_scores, saw_eos = [], [], False
        for rank, (score, flat) in enumerate(zip(top_scores.tolist(), top_flat.tolist())):
            beam, token = divmod(flat, vocab_size)
            sequence = torch.cat([beams[beam], beams.new_tensor([token])])
            if eos_token_id is not None and token == eos_token_id:
                saw_eos = True
                if rank < num_beams:  # only EOS candidates that would have made the beam are kept
                    finished.append((score / step ** length_penalty, sequence))
                continue
            next_beams.append(sequence)
            next_scores.append(score)
            if len(next_beams) == num_beams:
                break
        # decisive gaps only (the order among kept beams decides nothing): the last kept candidate against the
        # first left out, and, when an EOS candidate was seen, the rank-K boundary that admits it to the finished
        for cut in (rank, num_beams - 1) if saw_eos else (rank,):
            if cut + 1 < top_scores.numel():
                min_gap = min(min_gap, (top_scores[cut] - top_scores[cut + 1]).item())
        beams = torch.stack(next_beams)  # (K, T + step)
        scores = torch.tensor(next_scores, dtype=torch.float64)
        finished.sort(key=lambda item: item[0], reverse=True)
        if len(finished) > num_beams:  # which finished hypotheses survive
            min_gap = min(min_gap, finished[num_beams - 1][0] - finished[num_beams][0])
        finished = finished[:num_beams]
        if len(finished) == num_beams:
            min_gap = min(min_gap, abs(scores[0].item() / step ** length_penalty - finished[-1][0]))
            if scores[0].item() / step ** length_penalty <= finished[-1][0]:
                break
    n_generated = beams.shape[1] - prompt_length
    pool = finished + [(s / n_generated ** length_penalty, b) for s, b in zip(scores.tolist(), beams)]
    pool.sort(key=lambda item: item[0], reverse=True)
    if len(pool) > 1:
        min_gap = min(min_gap, pool[0][0] - pool[1][0])
    return BeamResult(pool[0][1], pool[0][0], pool, min_gap)

