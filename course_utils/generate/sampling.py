"""From logits to a next token: greedy, temperature, top-k, top-p, min-p, penalties and constraints.

Every function works on a batch of next-token ``logits`` of shape (B, V) and returns new logits of the same shape
(filters set removed tokens to ``-inf``), so processors compose in any order. :func:`process_logits` applies them in
the order ``transformers`` uses (penalties, temperature, top-k, top-p, min-p); ``SamplingConfig(temperature_last=
True)`` moves temperature after the filters instead, as llama.cpp's default sampler chain and the original min-p
implementation do. Randomness only enters in :func:`sample`, which takes an explicit ``torch.Generator`` that must
live on the device of the logits (:func:`course_utils.device.check_generator`).

Validation happens once, at the public entry: the standalone processors and :func:`process_logits` check their
arguments and scan the logits for NaN; :func:`next_token` and :func:`sample` check shapes, config and generator but
never scan values (a device sync per token); the loops validate once, then call :func:`choose_next` (no checks).

References
* Temperature (of the Boltzmann distribution): D. H. Ackley et al., "A Learning Algorithm for Boltzmann Machines", 1985.
* Top-k: A. Fan, M. Lewis, Y. Dauphin, "Hierarchical Neural Story Generation", 2018.
* Top-p (nucleus): A. Holtzman et al., "The Curious Case of Neural Text Degeneration", 2019/2020.
* Min-p: M. Nguyen et al., "Turning Up the Heat: Min-p Sampling for Creative and Coherent LLM Outputs", 2024.
* ``min_tokens_to_keep``: as ``transformers``' TopK/TopP/MinPLogitsWarper (never keep fewer tokens than that).
* Repetition penalty: N. S. Keskar et al., "CTRL: A Conditional Transformer Language Model for Controllable
  Generation", 2019, which divides every seen logit by the penalty; the sign rule (divide a positive logit, multiply
  a negative one) is ``transformers``' fix (PR #2303, 2019), followed by llama.cpp and vLLM. Every token of the
  context counts, prompt included.
* Frequency and presence penalties: the OpenAI API reference ("parameter details"):
  ``logit[j] -= c[j] * frequency_penalty + (c[j] > 0) * presence_penalty`` with ``c[j]`` how often token j "was
  sampled prior to the current position". We read that as vLLM does: generated tokens only, the prompt does not
  count (llama.cpp instead counts the last ``penalty_last_n`` tokens of the context, prompt included).

Conventions: top-k keeps every token tied with the k-th largest logit (as ``transformers``); top-p keeps a token when
the mass of the tokens strictly before it (sorted by probability, stable sort) is below ``top_p``. Left out:
typical, epsilon and eta sampling, contrastive search, per-row (batched) settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from course_utils.arguments import check_int, check_real
from course_utils.device import check_generator
from course_utils.model.gpt import check_temperature  # one rule for GPT.generate and these processors


def check_logits(logits: torch.Tensor) -> None:
    """Shape and dtype only (no scan of the values): ``logits`` must be a floating (B, V) tensor."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 2 or logits.shape[1] == 0:
        raise ValueError(f"logits must be (B, V) with V >= 1, got {tuple(logits.shape)}; take logits[:, -1, :] first")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")


def check_finite(logits: torch.Tensor) -> None:
    """:func:`check_logits`, then a scan of the values: no NaN or +inf (-inf is a mask), one finite entry per row."""
    check_logits(logits)
    if torch.isnan(logits).any() or (logits == math.inf).any():
        raise ValueError("logits contain NaN or +inf; check the model's forward pass (overflow in half precision?)")
    if not (logits > -math.inf).any(dim=-1).all():
        raise ValueError("a row of logits is entirely -inf: every token was filtered out, nothing can be sampled")


def _check_ids(prev_ids: torch.Tensor, logits: torch.Tensor, scan: bool = True, name: str = "prev_ids") -> None:
    if not isinstance(prev_ids, torch.Tensor) or prev_ids.dim() != 2 or prev_ids.shape[0] != logits.shape[0]:
        shape = getattr(prev_ids, "shape", type(prev_ids).__name__)
        raise ValueError(f"{name} must be a (B, T) tensor of token ids with B={logits.shape[0]}, got {shape}")
    if prev_ids.is_floating_point() or prev_ids.is_complex() or prev_ids.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids (torch.long), got {prev_ids.dtype}")
    if scan and prev_ids.numel() and (prev_ids.min() < 0 or prev_ids.max() >= logits.shape[1]):
        raise ValueError(f"{name} must lie in [0, {logits.shape[1]}), the vocabulary of the logits")


def _check_repetition_penalty(penalty: float) -> float:
    return check_real(penalty, "repetition_penalty", minimum=0, low_open=True,
                      allowed="a finite number > 0 (1 = off, > 1 discourages repeats)")


# ---------- the processors without checks (what a decoding loop calls every step) ----------

def _top_k(logits: torch.Tensor, top_k: int, keep: int = 1) -> torch.Tensor:
    k = min(max(top_k, keep), logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, -math.inf)


def _top_p(logits: torch.Tensor, top_p: float, keep: int = 1) -> torch.Tensor:
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)  # (B, V)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V) mass up to and including each token
    mass_before = F.pad(cumulative[:, :-1], (1, 0))  # (B, V) mass strictly before each token; 0 for the first
    remove_sorted = mass_before >= top_p
    remove_sorted[:, :keep] = False  # never fewer than `keep` tokens
    remove = remove_sorted.scatter(-1, order, remove_sorted)  # back to vocabulary order
    return logits.masked_fill(remove, -math.inf)


def _min_p(logits: torch.Tensor, min_p: float, keep: int = 1) -> torch.Tensor:
    probs = logits.softmax(dim=-1)  # (B, V)
    remove = probs < min_p * probs.amax(dim=-1, keepdim=True)  # (B, V)
    top = torch.topk(probs, min(keep, probs.shape[-1]), dim=-1).indices  # (B, keep) never removed
    return logits.masked_fill(remove.scatter(-1, top, False), -math.inf)


def _repetition(logits: torch.Tensor, prev_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, prev_ids, True)  # (B, V)
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def _frequency_presence(logits: torch.Tensor, generated: torch.Tensor, frequency: float, presence: float):
    counts = torch.zeros_like(logits).scatter_add_(1, generated, torch.ones_like(generated, dtype=logits.dtype))
    return logits - counts * frequency - (counts > 0).to(logits.dtype) * presence


# ---------- the public processors: validate, then call the unchecked version ----------

def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The most likely token of each row: (B, V) -> (B,)."""
    check_finite(logits)
    return logits.argmax(dim=-1)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits by ``temperature`` > 0: below 1 sharpens, above 1 flattens; -> 0 is greedy, -> inf uniform."""
    check_finite(logits)
    return logits / check_temperature(temperature)


def top_k_filter(logits: torch.Tensor, top_k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the ``max(top_k, min_tokens_to_keep)`` largest logits of each row (and ties with the last); rest -inf."""
    check_finite(logits)
    top_k = check_int(top_k, "top_k", minimum=1, allowed="an int >= 1 (leave it None to disable)")
    return _top_k(logits, top_k, check_int(min_tokens_to_keep, "min_tokens_to_keep", minimum=1))


def top_p_filter(logits: torch.Tensor, top_p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Nucleus filter: keep the most likely tokens until their mass reaches ``top_p`` in (0, 1], and at least
    ``min_tokens_to_keep`` of them."""
    check_finite(logits)
    top_p = check_real(top_p, "top_p", minimum=0, maximum=1, low_open=True, allowed="in (0, 1] (1 keeps every token)")
    return _top_p(logits, top_p, check_int(min_tokens_to_keep, "min_tokens_to_keep", minimum=1)).clone()


def min_p_filter(logits: torch.Tensor, min_p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep tokens whose probability is at least ``min_p`` (in [0, 1)) times the top token's probability, and the
    ``min_tokens_to_keep`` most likely ones whatever their probability."""
    check_finite(logits)
    min_p = check_real(min_p, "min_p", minimum=0, maximum=1, high_open=True, allowed="in [0, 1) (0 keeps every token)")
    return _min_p(logits, min_p, check_int(min_tokens_to_keep, "min_tokens_to_keep", minimum=1))


def apply_repetition_penalty(logits: torch.Tensor, prev_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL penalty: for every token already in ``prev_ids`` (B, T), divide a positive logit by ``penalty``, multiply
    a negative one. ``penalty`` > 1 discourages repeats, 1 does nothing, < 1 encourages them. (Dividing a negative
    logit by a penalty > 1 would move it towards 0, i.e. make the token *more* likely: hence the sign rule.)"""
    check_finite(logits)
    _check_ids(prev_ids, logits)
    return _repetition(logits, prev_ids, _check_repetition_penalty(penalty))


def apply_frequency_presence(logits: torch.Tensor, generated_ids: torch.Tensor, frequency_penalty: float = 0.0,
                             presence_penalty: float = 0.0) -> torch.Tensor:
    """OpenAI form: ``logit[j] - c[j] * frequency_penalty - [c[j] > 0] * presence_penalty``, where ``c[j]`` counts
    token j in ``generated_ids`` (B, N): the generated tokens only (vLLM's reading; llama.cpp counts the prompt)."""
    check_finite(logits)
    _check_ids(generated_ids, logits, name="generated_ids")
    frequency_penalty, presence_penalty = (check_real(value, name, allowed="a finite number (OpenAI: -2 to 2)")
        for name, value in (("frequency_penalty", frequency_penalty), ("presence_penalty", presence_penalty)))
    return _frequency_presence(logits, generated_ids, frequency_penalty, presence_penalty)


def constrain(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Structured output: keep only tokens where ``allowed`` (V,) or (B, V) is True (e.g. digits, valid JSON)."""
    check_finite(logits)
    if not isinstance(allowed, torch.Tensor) or allowed.dtype != torch.bool or allowed.shape not in (
            logits.shape[1:], logits.shape):  # (V,) for every row, or one row each: (B, V)
        raise ValueError(f"allowed must be a boolean tensor of shape (V,) or (B, V) = {tuple(logits.shape)}")
    out = logits.masked_fill(~allowed.expand_as(logits), -math.inf)
    check_finite(out)  # fails clearly if no allowed token is left
    return out


def is_ascii_digits(text: str) -> bool:
    """True when ``text`` is non-empty and every character is one of '0'-'9' (not '²', '٣' or other Unicode digits,
    for which ``str.isdigit`` is also True)."""
    return bool(text) and all("0" <= ch <= "9" for ch in text)


def decoded_token_mask(decode: Callable[[int], str], vocab_size: int, keep: Callable[[str], bool]) -> torch.Tensor:
    """(V,) bool: True where ``keep(decode(id))``. Decide by the *decoded text* of a token, never by its stored
    string: byte-level BPE stores raw bytes as stand-in characters (byte 0xB2 is stored as '²', which decodes to
    an invalid byte, not to a digit). Example: ``decoded_token_mask(lambda i: tok.decode([i]), V, is_ascii_digits)``."""
    vocab_size = check_int(vocab_size, "vocab_size", minimum=1)
    return torch.tensor([keep(decode(i)) for i in range(vocab_size)], dtype=torch.bool)


@dataclass
class SamplingConfig:
    """Decoding settings. ``None`` (or 1.0 for top_p / repetition_penalty, 0 for the additive penalties) = off.

    ``temperature_last``: False (default) divides by the temperature before top-k/top-p/min-p, as ``transformers``
    and vLLM do; True applies the filters to the temperature-1 distribution and the temperature afterwards, as
    llama.cpp's default sampler chain and the original min-p implementation do. ``min_tokens_to_keep``: the filters
    never keep fewer tokens than this (``transformers``' semantics).
    """

    greedy: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    temperature_last: bool = False
    min_tokens_to_keep: int = 1

    def __post_init__(self) -> None:  # numbers are stored as Python ints and floats (numpy scalars converted)
        self.temperature = self.temperature if self.greedy else check_temperature(self.temperature)
        if self.top_k is not None:
            self.top_k = check_int(self.top_k, "top_k", minimum=1, allowed="an int >= 1 or None")
        if self.top_p is not None:
            self.top_p = check_real(self.top_p, "top_p", minimum=0, maximum=1, low_open=True,
                                    allowed="in (0, 1] or None")
        if self.min_p is not None:
            self.min_p = check_real(self.min_p, "min_p", minimum=0, maximum=1, high_open=True,
                                    allowed="in [0, 1) or None")
        self.repetition_penalty = _check_repetition_penalty(self.repetition_penalty)
        for name in ("frequency_penalty", "presence_penalty"):
            setattr(self, name, check_real(getattr(self, name), name, allowed="a finite number (OpenAI: -2 to 2)"))
        if not isinstance(self.greedy, bool) or not isinstance(self.temperature_last, bool):
            raise TypeError("greedy and temperature_last must be True or False")
        self.min_tokens_to_keep = check_int(self.min_tokens_to_keep, "min_tokens_to_keep", minimum=1)


def _process(logits: torch.Tensor, prev_ids: torch.Tensor | None, config: SamplingConfig,
             prompt_length: int) -> torch.Tensor:
    logits = logits.float()
    if prev_ids is not None and prev_ids.numel():
        if config.repetition_penalty != 1.0:  # CTRL / transformers: every token of the context counts
            logits = _repetition(logits, prev_ids, config.repetition_penalty)
        if (config.frequency_penalty or config.presence_penalty) and prev_ids.shape[1] > prompt_length:
            logits = _frequency_presence(logits, prev_ids[:, prompt_length:],  # generated tokens only (as vLLM)
                                         config.frequency_penalty, config.presence_penalty)
    if config.greedy:
        return logits
    if config.temperature != 1.0 and not config.temperature_last:
        logits = logits / config.temperature
    keep = config.min_tokens_to_keep
    if config.top_k is not None:
        logits = _top_k(logits, config.top_k, keep)
    if config.top_p is not None:
        logits = _top_p(logits, config.top_p, keep)
    if config.min_p is not None:
        logits = _min_p(logits, config.min_p, keep)
    if config.temperature != 1.0 and config.temperature_last:
        logits = logits / config.temperature
    return logits


def _check_call(logits, prev_ids, config, prompt_length, scan: bool = False) -> None:
    check_logits(logits)
    if not isinstance(config, SamplingConfig):
        raise TypeError(f"config must be a SamplingConfig, got {type(config).__name__}")
    if prev_ids is not None:
        _check_ids(prev_ids, logits, scan=scan)
    check_int(prompt_length, "prompt_length", minimum=0)


def process_logits(logits: torch.Tensor, prev_ids: torch.Tensor | None, config: SamplingConfig,
                   prompt_length: int = 0) -> torch.Tensor:
    """Penalties, then (unless greedy) temperature and top-k, top-p, min-p in ``config``'s order: (B, V) -> (B, V).

    ``prev_ids`` (B, T) is the whole context; its first ``prompt_length`` columns are the prompt, which the CTRL
    penalty counts and the frequency/presence penalties do not.
    """
    _check_call(logits, prev_ids, config, prompt_length, scan=True)
    check_finite(logits)
    return _process(logits, prev_ids, config, prompt_length)


def choose_next(logits: torch.Tensor, prev_ids: torch.Tensor | None, config: SamplingConfig,
                generator: torch.Generator | None, prompt_length: int = 0) -> torch.Tensor:
    """The per-step decision without any checks (the caller validated once): (B, V) -> (B,)."""
    processed = _process(logits, prev_ids, config, prompt_length)
    if config.greedy:
        return processed.argmax(dim=-1)
    return torch.multinomial(processed.softmax(dim=-1), num_samples=1, generator=generator).squeeze(1)  # (B,)


def sample(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Draw one token per row from softmax(logits) with ``generator`` (required, on the logits' device): (B, V) -> (B,).
    The same checks and draw as :func:`next_token` with the default config (no processor changes the logits)."""
    return next_token(logits, None, SamplingConfig(), generator)


def next_token(logits: torch.Tensor, prev_ids: torch.Tensor | None, config: SamplingConfig,
               generator: torch.Generator | None = None, prompt_length: int = 0) -> torch.Tensor:
    """Processors then greedy or sampling: the single decision a decoding loop makes each step. (B, V) -> (B,).

    Checks shapes, the config and the generator's device, but does not scan the values (see the module docstring).
    """
    _check_call(logits, prev_ids, config, prompt_length)  # first: check_generator reads logits.device
    check_generator(generator, logits, "logits")
    if not config.greedy and generator is None:
        raise ValueError("sampling needs an explicit torch.Generator (or SamplingConfig(greedy=True))")
    return choose_next(logits, prev_ids, config, generator, prompt_length)
