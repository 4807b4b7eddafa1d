"""Chapter 09's SmolLM2-in-our-code against transformers on a CUDA device, without the GGUF asset (a GPU machine with
only torch and transformers can run it): SmolLM2-135M's exact shapes (30 layers, 9 query and 3 key/value heads,
C = 576, I = 1536, vocabulary 49,152) with seeded random weights in float32, converted by
``course_utils.model.llama.load_from_transformers``.

It prints, on CUDA and on the CPU for contrast: the largest logit difference on the real tokens of a left-padded
batch, the same divided by the logits' range (the notebook asserts < 1e-5 of it with the real weights), whether greedy
generation gives identical tokens, and that sampling with a generator on the device runs. It also times the forward
pass of both arms (median of 5 after a warm-up). Part of ``benchmarks/gpu_checks.sh``; the CPU CI never runs it.

    PYTHONPATH=. python3 benchmarks/gpu_llama_check.py [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from transformers import LlamaConfig as HFLlamaConfig, LlamaForCausalLM

from course_utils.device import make_generator, timed
from course_utils.model.llama import LlamaConfig, load_from_transformers


def smollm2_shaped(seed: int) -> LlamaForCausalLM:
    """transformers' Llama with SmolLM2-135M's configuration and seeded random weights."""
    ours = LlamaConfig()  # its defaults are SmolLM2-135M's
    config = HFLlamaConfig(vocab_size=ours.vocab_size, hidden_size=ours.n_embd,
                           intermediate_size=ours.intermediate_size, num_hidden_layers=ours.n_layer,
                           num_attention_heads=ours.n_head, num_key_value_heads=ours.n_kv_head,
                           max_position_embeddings=ours.block_size,
                           rope_theta=ours.rope_theta, rms_norm_eps=ours.rms_norm_eps,
                           tie_word_embeddings=ours.tie_word_embeddings, attention_bias=False, mlp_bias=False)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


@torch.no_grad()
def compare(device: torch.device, seed: int = 0, new_tokens: int = 32) -> None:
    hf = smollm2_shaped(seed).to(device)
    ours = load_from_transformers(hf).to(device)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, hf.config.vocab_size, (4, 48), generator=gen).to(device)   # (B, T)
    mask = torch.ones_like(ids)
    for row, pad in enumerate((0, 5, 17, 30)):                                        # left padding, as in chapter 09
        mask[row, :pad] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    ref = hf(ids, attention_mask=mask, position_ids=positions).logits                 # (B, T, V)
    out = ours(ids, attention_mask=mask, position_ids=positions)                      # (B, T, V)
    real = mask.bool()
    diff = (out - ref)[real].abs().max().item()
    span = (ref[real].max() - ref[real].min()).item()
    times = {"transformers": [], "ours": []}
    for rep in range(6):
        for name, fn in (("transformers", lambda: hf(ids, attention_mask=mask, position_ids=positions).logits),
                         ("ours", lambda: ours(ids, attention_mask=mask, position_ids=positions))):
            seconds = timed(fn)[1]
            if rep:
                times[name].append(seconds)
    t_hf, t_ours = (statistics.median(times[n]) for n in ("transformers", "ours"))
    prompt = ids[1:2, mask[1] == 1]                                                   # (1, T') one unpadded prompt
    hf_tokens = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                            max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=0)
    our_tokens = ours.generate(prompt, new_tokens, greedy=True)
    same = torch.equal(hf_tokens, our_tokens)
    sampled = ours.generate(prompt, new_tokens, generator=make_generator(seed, device), temperature=0.8)
    print(f"{device.type}: max |logit diff| {diff:.3e} over a logit range of {span:.2f} (relative {diff / span:.2e}); "
          f"greedy {new_tokens} tokens identical: {same}; sampled {sampled.shape[1] - prompt.shape[1]} tokens with a "
          f"{sampled.device.type} generator; forward (4, 48): transformers {t_hf * 1e3:.1f} ms, ours "
          f"{t_ours * 1e3:.1f} ms (ratio {t_hf / t_ours:.2f}, > 1 = ours faster)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    import transformers
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    for device in dict.fromkeys([args.device, "cpu"]):
        compare(torch.device(device))


if __name__ == "__main__":
    main()
