"""``course_utils.model.logits_fns``: the KV cache's name in a Hugging Face model's forward and output, whichever
transformers is installed (5.24 renamed ``past_key_values`` to ``cache``), and no package code spelling the old name
(``cache`` is too common a word to search for)."""

import ast
import pathlib
import warnings

import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

import course_utils
from course_utils.model.logits_fns import cache_keyword, library_cache_name, returned_cache

PACKAGE = pathlib.Path(course_utils.__file__).parent


class NewName(torch.nn.Module):
    def forward(self, input_ids, cache=None, use_cache=True):
        return input_ids


class OldName(torch.nn.Module):
    def forward(self, input_ids, past_key_values=None, use_cache=True):
        return input_ids


class PassesOn(torch.nn.Module):  # as peft's wrapper does: **kwargs to the model inside
    def forward(self, *args, **kwargs):
        return args


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def test_the_keyword_is_read_from_the_forward_signature():
    assert cache_keyword(NewName()) == "cache"
    assert cache_keyword(OldName()) == "past_key_values"
    assert cache_keyword(PassesOn()) == library_cache_name() in ("cache", "past_key_values")


def test_the_installed_transformers_takes_and_returns_the_cache_under_that_name_without_a_warning():
    model = tiny_llama()
    assert cache_keyword(model) == library_cache_name()
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])  # (1, T)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # a deprecated name would warn (transformers >= 5.24)
        full = model(input_ids=ids).logits  # (1, T, V)
        cache = DynamicCache(config=model.config)
        out = model(input_ids=ids[:, :-1], **{cache_keyword(model): cache}, use_cache=True)
        assert returned_cache(out) is cache
        step = model(input_ids=ids[:, -1:], **{cache_keyword(model): returned_cache(out)}, use_cache=True)
    torch.testing.assert_close(step.logits[:, -1], full[:, -1], rtol=1e-5, atol=1e-5)  # the cache was used


def test_no_package_code_passes_or_reads_past_key_values_by_name():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "logits_fns.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([k.arg for k in node.keywords] if isinstance(node, ast.Call) else
                     [node.attr] if isinstance(node, ast.Attribute) else [])
            found += [f"{path.relative_to(PACKAGE)}:{node.lineno}" for n in names if n == "past_key_values"]
    assert not found, f"use cache_keyword / returned_cache instead of past_key_values: {found}"
