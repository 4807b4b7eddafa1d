"""peft's routes to chapter 06's exercise answers, which :mod:`course_utils.exercises.ch06` switches off while the
learner's function runs: the ``__init__`` of its models and LoRA/DoRA layers (a model or layer that would compute
the answer) and, for layers made without ``__init__`` (``__new__`` on a stand-in), the functions themselves.

peft is optional: where it is missing or does not import (an old peft under transformers 5), both functions do
nothing, as the learner cannot call it either. A name that an installed peft version lacks is skipped.
Found by shortcut hunts (2026-12-04) that called each candidate on stand-in objects and ran the check: the names in
:data:`PEFT_ANSWERS` passed exercise 2a or 2b (or, DoRA's merges, would hand over exercise 3's weight) before they
were switched off, besides ``get_peft_model``, which builds a whole model. Left out: plain linear algebra
(``torch.linalg.svd``, ``torch.pca_lowrank``, scipy's ``svds``), which the exercise allows.
"""

from __future__ import annotations

import contextlib
from typing import Callable
from unittest import mock

from course_utils import checks
from course_utils.optional import PEFT, import_problem


def refuse_peft_inits(stack: contextlib.ExitStack, refusing_init: Callable) -> None:
    """Where peft imports, refuse (in ``stack``) the ``__init__`` of peft's ``BaseTuner`` (every route to a
    peft model: ``get_peft_model``, ``PeftModel``, ``LoraModel``, ``inject_adapter_in_model``), ``LoraLayer`` (a LoRA
    or DoRA layer built alone) and ``DoraLinearLayer`` (every DoRA layer's base); one made by ``__new__`` still meets
    :func:`peft_answers`."""
    if import_problem("peft", PEFT) is None:
        from peft.tuners.lora import LoraLayer, dora
        from peft.tuners.tuners_utils import BaseTuner

        for cls in (BaseTuner, LoraLayer, dora.DoraLinearLayer):
            stack.enter_context(mock.patch.object(cls, "__init__", refusing_init))


# module:name of peft functions that hand over 2a's factors, 2b's share or 3's merged DoRA weight (most on a
# stand-in ``self``), and get_peft_model
PEFT_ANSWERS = ("peft:get_peft_model", *("peft." + w for w in (
    "tuners.lora.conversion:_convert_module_to_lora", "utils.loftq_utils:_low_rank_decomposition",
    "tuners.lora:LoraLayer.pissa_init", "tuners.lora.model:LoraModel._svd_generalized_task_arithmetic_weighted_adapter",
    "tuners.osf.utils:decompose_weight_matrix", "tuners.psoft.layer:PsoftLayer._compute_svd_factors",
    "tuners.tinylora.layer:TinyLoraLayer._init_svd", "tuners.tinylora.layer:Embedding._init_svd_embedding",
    "tuners.lora.variants:KasaLinearVariant._truncate_base_weight", "tuners.frod.model:_projection_from_weights",
    "tuners.lora.conversion:_convert_miss_module_to_lora", "tuners.lora.corda:collect_eigens_for_layer",
    "utils.incremental_pca:IncrementalPCA.partial_fit", "tuners.adamss.utils:slice_pca",
    "tuners.lora:LoraLayer.lora_ga_init", "tuners.lora:LoraLayer.mica_init",
    "tuners.lora.intruders:reduce_intruder_dimension",
    "tuners.lora.arrow:ArrowLoraLinearLayer.top_right_singular_vec_from_BA",
    *(f"tuners.lora.variants:{c}.{m}" for c in ("DoraLinearVariant", "DoraEmbeddingVariant", "_DoraConvNdVariant")
      for m in ("merge_safe", "merge_unsafe")))))


def peft_answers() -> list[Callable]:
    """Where peft imports, :data:`PEFT_ANSWERS` and every DoRA layer's ``forward`` and ``get_weight_norm``."""
    if import_problem("peft", PEFT) is not None:
        return []
    from peft.tuners.lora import dora

    layers = [f"{n}.{m}" for n, c in vars(dora).items() if isinstance(c, type) and issubclass(c, dora.DoraLinearLayer)
              for m in ("forward", "get_weight_norm")]
    return [*checks.library_functions(dora.__name__, *layers),
            *(f for where in PEFT_ANSWERS for f in checks.library_functions(*where.split(":")))]
