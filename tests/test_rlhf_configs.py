"""The RLHF trainers' configs refuse bad settings when they are made, before any rollout or step is spent."""

import math

import numpy as np
import pytest

from course_utils.rlhf.dpo import DPOConfig
from course_utils.rlhf.grpo import GRPOConfig
from course_utils.rlhf.losses import check_number
from course_utils.rlhf.ppo import PPOConfig
from course_utils.rlhf.preferences import Preference


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_check_number_refuses_nan_and_inf_even_in_a_closed_range(value):
    with pytest.raises(ValueError, match="finite number in \\[0, 1\\]"):
        check_number("gamma", value, 0.0, 1.0, closed=True)
    with pytest.raises(ValueError, match="finite"):
        check_number("beta", value, 0.0, math.inf, closed=True)


def test_check_number_takes_numpy_numbers_and_refuses_bools_and_strings():
    check_number("lr", np.float32(0.5), 0.0, 1.0)
    check_number("lr", np.int64(1), 0.0, 1.0, closed=True)
    for bad in (True, "0.5", None):
        with pytest.raises(TypeError, match=r"lr must be a finite number in \(0, 1\), got "):
            check_number("lr", bad, 0.0, 1.0)


@pytest.mark.parametrize("field, value", [
    ("temperature", 1e-6), ("temperature", math.inf), ("temperature", 0.0),
    ("beta", math.nan), ("beta", math.inf), ("beta", -0.1),
    ("clip_eps", 0.0), ("clip_eps", 1.0), ("lr", math.inf), ("lr", math.nan), ("grad_clip", 0.0),
])
def test_ppo_and_grpo_configs_refuse_bad_settings(field, value):
    for config in (PPOConfig, GRPOConfig):
        with pytest.raises(ValueError, match=field.split("_")[0]):
            config(**{field: value})


@pytest.mark.parametrize("field, value", [("gamma", 1.5), ("gamma", math.nan), ("lam", -0.1), ("value_clip", 0.0),
                                          ("value_lr", math.inf)])
def test_ppo_config_refuses_bad_advantage_and_value_settings(field, value):
    with pytest.raises(ValueError, match=field):
        PPOConfig(**{field: value})


def test_configs_accept_the_edges_and_store_a_float_temperature():
    ppo = PPOConfig(beta=0.0, gamma=1.0, lam=0.0, temperature=np.float32(0.7))
    assert type(ppo.temperature) is float and ppo.temperature == pytest.approx(0.7)
    assert GRPOConfig(beta=0.0, temperature=1e-4).temperature == 1e-4


@pytest.mark.parametrize("field, value", [("beta", math.inf), ("beta", 0.0), ("lr", math.nan), ("lr", -1e-3),
                                          ("steps", True), ("batch_size", 2.0), ("eval_every", 0)])
def test_dpo_config_refuses_bad_settings(field, value):  # steps=True ran one step
    with pytest.raises(ValueError, match=field):
        DPOConfig(**{field: value})


@pytest.mark.parametrize("config, field", [(PPOConfig, "iterations"), (PPOConfig, "epochs"),
                                           (GRPOConfig, "iterations"), (GRPOConfig, "max_new_tokens"),
                                           (DPOConfig, "steps")])
def test_rlhf_config_counts_refuse_bools_and_take_numpy_ints(config, field):
    with pytest.raises(ValueError, match=f"{config.__name__}.{field} must be a positive int, got True"):
        config(**{field: True})  # True ran one iteration / epoch / step
    value = getattr(config(**{field: np.int64(2)}), field)
    assert value == 2 and type(value) is int


@pytest.mark.parametrize("field, value", [("max_pleasant", -1), ("min_words", 2.5), ("grim_weight", math.nan),
                                          ("short_weight", math.inf), ("empty_score", -math.inf)])
def test_preference_refuses_bad_weights_and_counts(field, value):
    with pytest.raises(ValueError, match=f"Preference.{field}"):
        Preference(**{field: value})
    Preference(grim_weight=-1.0, max_pleasant=0)  # a flipped term and no pleasant words are allowed


def test_preference_word_lists_must_be_frozensets():
    with pytest.raises(TypeError, match="Preference.pleasant"):
        Preference(pleasant=["love"])
