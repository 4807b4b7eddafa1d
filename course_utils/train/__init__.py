"""Training: batches, the training loop, recipes, checkpoints, and the masked-language-model objective.

Modules: ``batches`` (random windows with an explicit generator), ``loop`` (AdamW, warm-up + cosine, clipping,
evaluation, :class:`History`), ``muon`` (the Muon optimiser for hidden matrices), ``recipes`` (configurations for the
character GPT), ``checkpoint`` (atomic save and verified load), ``mlm`` (BERT-style corruption and a bidirectional
wrapper).
Imports :mod:`course_utils.model`, :mod:`course_utils.text` and the infrastructure modules.
"""
