"""Multinomial logistic regression in torch: the linear probe on hidden states and the bag-of-words baseline.

The model is softmax(W x' + b) over K classes, with x' the features standardised by the training set's mean and
standard deviation (so one L2 strength suits features of any scale). Training minimises the mean cross-entropy plus
(l2 / 2) ||W||^2 (the bias is not penalised) with full-batch L-BFGS (Nocedal, 1980; PyTorch's ``torch.optim.LBFGS``
with a strong-Wolfe line search). The objective is convex and the weights start at zero, so the fit is
deterministic and needs no random generator; it runs on the device of the features (or ``device``).

On standardised features this is the model scikit-learn's multinomial ``LogisticRegression(solver="lbfgs")`` fits,
with C = 1 / (l2 * N) (its penalty is weighed against the summed, not the mean, loss).

Left out: class weights, early stopping, elastic-net penalties, mini-batches (a few thousand examples fit in one
batch).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils.arguments import check_int, check_real


class LinearProbe(nn.Module):
    """Standardise, then one linear layer: (N, D) features -> (N, K) logits."""

    def __init__(self, mean: torch.Tensor, scale: torch.Tensor, n_classes: int):
        super().__init__()
        self.register_buffer("mean", mean)  # (D,)
        self.register_buffer("scale", scale)  # (D,)
        self.linear = nn.Linear(mean.shape[0], n_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features - self.mean) / self.scale)  # (N, K)

    @torch.no_grad()
    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        """(N, K) class probabilities, on the probe's device."""
        device = self.mean.device
        return torch.softmax(self(features.to(device, torch.float32)), dim=-1)


def _check(features: object, targets: object, n_classes: object, l2: object, max_iter: object) -> None:
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] == 0:
        raise ValueError("features must be a non-empty (N, D) tensor")
    if not isinstance(targets, torch.Tensor) or targets.shape != features.shape[:1] or targets.dtype != torch.long:
        raise ValueError(f"targets must be a (N,) long tensor of class indices, N = {features.shape[0]}")
    check_int(n_classes, "n_classes", minimum=2)
    if targets.min() < 0 or targets.max() >= n_classes:
        raise ValueError(f"targets must lie in [0, {n_classes - 1}]")
    if not torch.isfinite(features).all():
        raise ValueError("features must be finite")
    check_real(l2, "l2", minimum=0)  # NaN, inf: NaN loss
    check_int(max_iter, "max_iter", minimum=1, allowed="a positive int")


def objective(probe: LinearProbe, features: torch.Tensor, targets: torch.Tensor, l2: float) -> torch.Tensor:
    """Mean cross-entropy + (l2 / 2) ||W||^2: what :func:`train_logistic_regression` minimises."""
    return F.cross_entropy(probe(features), targets) + 0.5 * l2 * probe.linear.weight.pow(2).sum()


def train_logistic_regression(features: torch.Tensor, targets: torch.Tensor, n_classes: int, l2: float = 1e-2,
                              max_iter: int = 200, device: torch.device | str | None = None) -> LinearProbe:
    """Fit a :class:`LinearProbe` to ``features`` (N, D) and ``targets`` (N,) by full-batch L-BFGS, in float32 on
    ``device`` (default: the features' device)."""
    _check(features, targets, n_classes, l2, max_iter)
    n_classes, l2, max_iter = int(n_classes), float(l2), int(max_iter)
    device = features.device if device is None else torch.device(device)
    x, y = features.to(device, torch.float32), targets.to(device)
    mean = x.mean(0)
    scale = x.std(0, unbiased=False).clamp(min=1e-6)  # a constant feature is centred, not blown up
    probe = LinearProbe(mean, scale, n_classes).to(device)
    optimizer = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=max_iter, tolerance_grad=1e-6,
                                  tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = objective(probe, x, y, l2)
        loss.backward()
        return loss

    optimizer.step(closure)
    return probe.eval()
