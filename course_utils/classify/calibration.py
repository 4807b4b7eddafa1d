"""Contextual calibration (Zhao, Wallace, Feng, Klein, Singh, 2021, "Calibrate Before Use: Improving Few-Shot
Performance of Language Models").

A prompted model carries biases that have nothing to do with the passage: towards the label that is most common
among the shots (majority-label bias), the label of the last shot (recency bias) and labels that are frequent words
(common-token bias). Zhao et al. estimate that bias by asking the same prompt about a content-free input ("N/A", "",
"[MASK]"), where a fair model would give every label 1/L, and divide it out:

    p_cf = mean over content-free inputs of the label distribution,    W = diag(p_cf)^-1,    q = W p / sum(W p)

so a label the prompt favours for no reason is scaled down. The paper writes q = softmax(W p + b) with b = 0; the
authors' code (tonyzhaozh/few-shot-learning, run_classification.py, eval_accuracy) normalises p, applies W and takes
the argmax, without renormalising. We renormalise so that q is a distribution (the argmax is the same) whose
confidence can be compared with accuracy, as the expected calibration error does. The paper's softmax(W p) is a
distribution too, with the same argmax but different confidences, so an ECE of calibrated probabilities depends on
which of the two is used.

Left out: the affine variant with a learned bias b, calibration of generation tasks, estimating p_cf from unlabelled
real inputs (Fei et al., 2023, "Mitigating Label Biases for In-context Learning").
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from course_utils.classify.passages import Passage
from course_utils.classify.prompts import Template, build_prompt, get_template
from course_utils.classify.scoring import label_logprobs_many, label_probabilities

#: The content-free inputs of the paper's main experiments.
CONTENT_FREE = ("N/A", "", "[MASK]")


def _distribution(name: str, values: object, last_dim: int | None = None) -> torch.Tensor:
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of probabilities, got {type(values).__name__}")
    values = values.detach().float()
    if values.dim() == 0 or values.shape[-1] == 0:
        raise ValueError(f"{name} must have a last axis over labels, got shape {tuple(values.shape)}")
    if last_dim is not None and values.shape[-1] != last_dim:
        raise ValueError(f"{name} has {values.shape[-1]} labels, the content-free distribution has {last_dim}")
    if not torch.isfinite(values).all() or (values < 0).any():
        raise ValueError(f"{name} must be finite and non-negative (probabilities, not log-probabilities)")
    totals = values.sum(-1)
    if not torch.allclose(totals, torch.ones_like(totals), atol=1e-4):
        raise ValueError(f"{name} must sum to 1 over labels (label_probabilities()), got sums {totals.flatten()[:3]}")
    return values


def contextual_calibration(probs: torch.Tensor, p_cf: torch.Tensor) -> torch.Tensor:
    """Calibrated label distributions, same shape as ``probs`` (..., L): ``probs / p_cf``, renormalised."""
    p_cf = _distribution("p_cf", p_cf)
    if p_cf.dim() != 1:
        raise ValueError(f"p_cf must be one distribution (L,), got shape {tuple(p_cf.shape)}")
    if (p_cf <= 0).any():
        raise ValueError("p_cf must be positive for every label: W = diag(p_cf)^-1 divides by it")
    probs = _distribution("probs", probs, last_dim=p_cf.shape[0])
    scaled = probs / p_cf.to(probs.device)  # (..., L): W p with W diagonal
    return scaled / scaled.sum(-1, keepdim=True)


@torch.no_grad()
def content_free_probabilities(model: nn.Module, tokenizer, template: Template | str, shots: list[Passage] = (),
                               content_free: Sequence[str] = CONTENT_FREE) -> torch.Tensor:
    """(L,) p_cf: the model's label distribution for each content-free input in the prompt (the same template and
    shots as the real questions), averaged over the inputs."""
    template = get_template(template) if isinstance(template, str) else template
    if isinstance(content_free, str) or not content_free or not all(isinstance(c, str) for c in content_free):
        raise ValueError("content_free must be a non-empty list of strings, e.g. ['N/A', '', '[MASK]']")
    prompts = [build_prompt(template, text, shots, tokenizer) for text in content_free]
    scores = label_logprobs_many(model, tokenizer, prompts, template.labels(), progress=False)  # (n_cf, L)
    return label_probabilities(scores).mean(0)  # (L,)
