"""What RLHF costs on a real model: memory of the models each method holds, and FLOPs of one PPO iteration.

Memory follows the mixed-precision accounting of Rajbhandari et al., 2020 ("ZeRO: Memory Optimizations Toward
Training Trillion Parameter Models"): a model trained with Adam holds bf16 weights and gradients (2 + 2 bytes per
parameter) plus float32 master weights and two Adam moments (4 + 4 + 4), 16 bytes per parameter; a frozen model in
bf16 holds 2. PPO trains the policy and the value model and keeps the reference and the reward model frozen; DPO
and GRPO (with a verifiable reward) train the policy and keep the reference. Activations, the KV cache of
generation and framework overhead are left out, so these are lower bounds.

FLOPs use the 2N-per-token forward and 6N-per-token training costs of Kaplan et al., 2020 (attention's own matmuls
left out, as in chapter 04's 6ND): generating a response with a KV cache costs one forward pass over prompt and
response; scoring needs four forward passes (old policy, reference, reward model, value model); each epoch trains
the policy and the value model. The value and reward models are assumed to be the policy's size, a simplification:
InstructGPT paired its 175B policy with a 6B reward model and initialised the value function from it. DPO's
reference log-probabilities can be computed once before training, so its frozen reference need not stay resident.
"""

from __future__ import annotations


from course_utils.arguments import check_real

TRAINED_BYTES = 16  # bf16 weights + bf16 grads + fp32 master weights + Adam m and v
FROZEN_BYTES = 2  # bf16 weights


def _check_count(name: str, value: float) -> float:
    """``value`` as a Python int or float (numpy numbers accepted), or a ValueError."""
    return check_real(value, name, minimum=0, low_open=True, finite=False, allowed="a positive number",  # inf too
                      keep_int=True)  # an int stays an exact int


def rlhf_memory_bytes(n_params: float) -> dict[str, float]:
    """Bytes of model state per method for a policy of ``n_params`` parameters (activations excluded)."""
    n_params = _check_count("n_params", n_params)
    return {
        "PPO": n_params * (2 * TRAINED_BYTES + 2 * FROZEN_BYTES),  # policy + value trained; reference + RM frozen
        "DPO": n_params * (TRAINED_BYTES + FROZEN_BYTES),  # policy trained; reference frozen
        "GRPO": n_params * (TRAINED_BYTES + FROZEN_BYTES),  # policy trained; reference frozen; reward is a program
        "SFT": n_params * TRAINED_BYTES,
    }


def ppo_iteration_flops(n_params: float, batch: int, prompt_tokens: int, response_tokens: int,
                        epochs: int) -> dict[str, float]:
    """FLOPs of one PPO iteration on ``batch`` responses: generation, scoring, training, and the total."""
    n_params, batch, prompt_tokens, response_tokens, epochs = (_check_count(name, value) for name, value in (
        ("n_params", n_params), ("batch", batch), ("prompt_tokens", prompt_tokens),
        ("response_tokens", response_tokens), ("epochs", epochs)))
    tokens = batch * (prompt_tokens + response_tokens)
    parts = {
        "generation": 2 * n_params * tokens,
        "scoring (policy, reference, reward, value)": 4 * 2 * n_params * tokens,
        "training (policy and value, all epochs)": epochs * 2 * 6 * n_params * tokens,
    }
    parts["total"] = sum(parts.values())
    return parts
