"""Put LoRA on a whole model: choose Linear layers by name, wrap them, count, merge, remove, save and load adapters.

Follows E. J. Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021, and matches the conventions of
Hugging Face peft (``LoraConfig``/``get_peft_model``, which the tests compare against): a target name matches a
module whose dotted name equals it or ends with "." + it; ``"all-linear"`` means every ``nn.Linear`` except the
output head; the parameter count is peft's ``print_trainable_parameters`` one (trainable = parameters with
``requires_grad``, total = every parameter once, LoRA's included).

Works on transformers models (SmolLM2's q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) and on the
course's own GPT (attn.qkv, attn.proj, mlp.fc, mlp.proj; its output head is ``lm_head``).

An adapter file is a safetensors file of only the A and B matrices (keys ``<module>.lora_A``/``<module>.lora_B``)
with r, alpha, rslora and the wrapped module names in its metadata (strings), written atomically.

Left out: several named adapters on one model, per-module ranks, LoRA on embeddings, peft's file layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

from course_utils.cache import atomic_file
from course_utils.lora.layer import LoRALinear, check_lora_hyperparameters, check_rank_fits

ALL_LINEAR = "all-linear"
RESERVED_METADATA = ("format", "r", "alpha", "rslora", "target_modules")


@dataclass(frozen=True)
class LoRAReport:
    """What :func:`apply_lora` did: the wrapped module names and the parameter counts after wrapping."""
    wrapped: tuple[str, ...]
    trainable: int
    total: int
    r: int | None = None

    @property
    def trainable_fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        rank = f" r={self.r}" if self.r is not None else ""
        return (f"LoRA{rank} on {len(self.wrapped)} modules: {self.trainable:,} trainable of {self.total:,} "
                f"parameters ({100 * self.trainable_fraction:.3f}%)")


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; ``parameters()`` yields a tied (shared) tensor once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """{dotted name: LoRALinear} for every LoRA layer in ``model``, in module order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def _output_head(model: nn.Module) -> nn.Module | None:
    if callable(getattr(model, "get_output_embeddings", None)):
        return model.get_output_embeddings()
    for name, module in model.named_modules():
        if name.split(".")[-1] in ("lm_head", "head"):
            return module
    return None


def _linear_leaf_names(model: nn.Module) -> list[str]:
    return sorted({name.split(".")[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear) and name})


def _resolve_targets(model: nn.Module, target_modules: object) -> list[str]:
    """Dotted names of the modules to wrap, in module order; errors name the bad target."""
    targets = [target_modules] if isinstance(target_modules, str) else target_modules
    if not isinstance(targets, Sequence) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise TypeError(f"target_modules must be a non-empty string or a non-empty sequence of non-empty strings, "
                        f"got {target_modules!r}")
    named = dict(model.named_modules())
    if ALL_LINEAR in targets:
        if len(targets) != 1:
            raise ValueError(f"'{ALL_LINEAR}' must be the only target, got {list(targets)}")
        head = _output_head(model)
        return [n for n, m in named.items() if isinstance(m, nn.Linear) and m is not head]
    chosen = set()
    for target in targets:
        matches = [n for n in named if n and (n == target or n.endswith("." + target))]
        if not matches:
            raise ValueError(f"target module {target!r} matches no module; the Linear layers are named "
                             f"{_linear_leaf_names(model)} (or use '{ALL_LINEAR}')")
        for name in matches:
            if not isinstance(named[name], nn.Linear):
                raise TypeError(f"target {target!r} matches {name!r}, a {type(named[name]).__name__}; LoRA here "
                                f"wraps nn.Linear only (Linear layers: {_linear_leaf_names(model)})")
        chosen.update(matches)
    return [n for n in named if n in chosen]


def _check_not_tied(model: nn.Module, names: list[str]) -> None:
    """Merging into a weight that another module shares (a head tied to the embedding) would change both."""
    owners: dict[int, list[str]] = {}
    for pname, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(pname)
    modules = dict(model.named_modules())
    for name in names:
        shared = owners[id(modules[name].weight)]
        if len(shared) > 1:
            raise ValueError(f"{name}.weight is tied to {[s for s in shared if not s.startswith(name + '.')]}; "
                             f"merging LoRA into it would change those too: leave {name!r} out of target_modules")


def apply_lora(model: nn.Module, target_modules: str | Sequence[str], r: int, alpha: float, dropout: float = 0.0,
               rslora: bool = False, generator: torch.Generator | None = None) -> LoRAReport:
    """Freeze every parameter of ``model`` and replace each target ``nn.Linear`` by a :class:`LoRALinear` in place
    (same device and dtype). Everything is checked before anything changes."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    r, alpha, dropout = check_lora_hyperparameters(r, alpha, dropout)  # numpy numbers as Python numbers
    if not isinstance(rslora, bool):
        raise TypeError(f"rslora must be a bool, got {type(rslora).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if lora_layers(model):
        raise ValueError("model already has LoRA layers; call remove_lora(model, merge=...) first")
    names = _resolve_targets(model, target_modules)
    if not names:
        raise ValueError(f"target_modules={target_modules!r} selects no nn.Linear in this model")
    modules = dict(model.named_modules())
    narrowest = min(names, key=lambda n: min(modules[n].in_features, modules[n].out_features))  # its bound is all's
    check_rank_fits(r, modules[narrowest].in_features, modules[narrowest].out_features,
                    what=narrowest if len(names) == 1 else f"{narrowest}, the narrowest of the {len(names)} targets")
    _check_not_tied(model, names)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, leaf, LoRALinear(modules[name], r, alpha, dropout, rslora, generator))
    trainable, total = count_parameters(model)
    return LoRAReport(wrapped=tuple(names), trainable=trainable, total=total, r=r)


def _layers_or_raise(model: nn.Module) -> dict[str, LoRALinear]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    layers = lora_layers(model)
    if not layers:
        raise ValueError("model has no LoRA layers; call apply_lora first")
    return layers


def merge_lora(model: nn.Module) -> int:
    """Merge every LoRA layer (W <- W + scaling B A); returns how many changed (merged ones warn and stay)."""
    changed = 0
    for layer in _layers_or_raise(model).values():
        changed += not layer.merged
        layer.merge()
    return changed


def unmerge_lora(model: nn.Module) -> int:
    """Unmerge every LoRA layer; returns how many changed (unmerged ones warn and stay)."""
    changed = 0
    for layer in _layers_or_raise(model).values():
        changed += layer.merged
        layer.unmerge()
    return changed


def remove_lora(model: nn.Module, merge: bool) -> int:
    """Put each wrapped ``nn.Linear`` back: with the update merged into it (``merge=True``) or with its original
    weight (``merge=False``, the update discarded). Returns how many were removed. Parameters stay frozen."""
    if not isinstance(merge, bool):
        raise TypeError(f"merge must be a bool, got {type(merge).__name__}")
    layers = _layers_or_raise(model)
    for name, layer in layers.items():
        if merge and not layer.merged:
            layer.merge()
        elif not merge and layer.merged:
            layer.unmerge()
        parent_name, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent_name), leaf, layer.base)
    return len(layers)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """{"<module>.lora_A": (r, in), "<module>.lora_B": (out, r)} as detached CPU clones."""
    out = {}
    for name, layer in _layers_or_raise(model).items():
        out[f"{name}.lora_A"] = layer.lora_A.detach().cpu().clone()
        out[f"{name}.lora_B"] = layer.lora_B.detach().cpu().clone()
    return out


def _adapter_settings(layers: dict[str, LoRALinear]) -> dict[str, str]:
    settings = {(layer.r, layer.alpha, layer.rslora) for layer in layers.values()}
    if len(settings) != 1:
        raise ValueError(f"the LoRA layers have different (r, alpha, rslora) settings {sorted(settings)}; an adapter "
                         f"file stores one setting")
    r, alpha, rslora = settings.pop()
    return {"r": str(r), "alpha": repr(float(alpha)), "rslora": str(rslora).lower(),
            "target_modules": json.dumps(list(layers))}


def _write_bytes(f, data: bytes) -> None:
    f.write(data)


def save_adapter(model: nn.Module, path: str | Path, metadata: dict | None = None) -> Path:
    """Write the A and B matrices to a safetensors file at ``path`` atomically (an interrupted save leaves any
    existing file intact), with r, alpha, rslora, target_modules and ``metadata`` (str -> str) in its header."""
    layers = _layers_or_raise(model)
    extra = {} if metadata is None else metadata
    if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise TypeError(f"metadata must be a dict of str -> str (safetensors metadata is text), got {metadata!r}")
    clash = sorted(set(extra) & set(RESERVED_METADATA))
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved (the adapter writes {list(RESERVED_METADATA)})")
    header = {**extra, **_adapter_settings(layers), "format": "pt"}
    data = safetensors_bytes({k: v.contiguous() for k, v in lora_state_dict(model).items()}, metadata=header)
    path = Path(path)
    with atomic_file(path, "wb") as f:
        _write_bytes(f, data)
    return path


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of an adapter file; ValueError if it is not a readable safetensors adapter."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no adapter file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise ValueError(f"{path} is not a readable safetensors adapter (truncated or corrupt?): {error}") from error
    missing = [k for k in ("r", "alpha", "rslora") if k not in metadata]
    if missing:
        raise ValueError(f"{path} has no LoRA settings {missing} in its metadata; was it written by save_adapter?")
    return tensors, metadata


def load_adapter(model: nn.Module, path: str | Path) -> dict[str, str]:
    """Copy A and B from an adapter file into an already wrapped, unmerged ``model``; returns the file's metadata.
    Raises ValueError naming what differs: r/alpha/rslora, module names, or shapes."""
    layers = _layers_or_raise(model)
    tensors, metadata = read_adapter(path)
    ours = _adapter_settings(layers)
    for key in ("r", "alpha", "rslora"):
        theirs = metadata[key] if key != "alpha" else repr(float(metadata[key]))
        if theirs != ours[key]:
            raise ValueError(f"adapter {key}={metadata[key]} but the model's LoRA layers have {key}={ours[key]}")
    expected = {f"{n}.lora_{m}": getattr(layer, f"lora_{m}") for n, layer in layers.items() for m in "AB"}
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(f"adapter names do not match the model: missing {missing[:4]} ({len(missing)} in all), "
                         f"unexpected {unexpected[:4]} ({len(unexpected)} in all)")
    for key, param in expected.items():
        if tensors[key].shape != param.shape:
            raise ValueError(f"{key}: adapter shape {tuple(tensors[key].shape)} but model {tuple(param.shape)}")
    merged = [n for n, layer in layers.items() if layer.merged]
    if merged:
        raise ValueError(f"layers {merged[:4]} are merged; call unmerge_lora(model) before loading an adapter")
    with torch.no_grad():
        for key, param in expected.items():
            param.copy_(tensors[key])
    return metadata
