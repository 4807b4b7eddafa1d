"""Device rules a CPU-only CI cannot see by running on the CPU: generators on the wrong device, the profile's device.

A ``torch.Generator`` draws only on its own device: on CUDA, ``torch.multinomial(cuda_probs, 1, generator=cpu_gen)``
raises, and on the CPU the same call works, so a CPU run never sees the bug. These tests put the data on the
``meta`` device (shapes without storage; it exists on every machine) while the generator stays on the CPU, which is
the Colab situation with a CPU generator, and run the code under :class:`GeneratorDeviceGuard`, a
``TorchFunctionMode`` that fails any random draw whose generator is on another device than the tensor it draws for.
Every public function that draws with a generator must refuse the mismatch with a clear ``ValueError`` before any
draw (or draw where the generator is, on purpose, and move the result).

The second rule: MPS has no float64, so code that needs float64 moves to the CPU first. :class:`Float64OffCpuGuard`
pretends marked CPU tensors are on such an accelerator and fails any float64 made there, any numpy conversion of them
(``.numpy()`` needs a CPU tensor on every accelerator) and any draw for them with a CPU generator.
"""

import math
import types
import warnings

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from course_utils.device import check_generator, make_generator, pick_device, seed_everything, synchronize, timed
from course_utils.generate.kv_cache import generate_cached, generate_uncached
from course_utils.generate.sampling import SamplingConfig, next_token, sample
from course_utils.model.gpt import GPT, GPTConfig
from course_utils.scaling.emergence import train_batch
from course_utils.train.batches import sample_batch
from course_utils.train.mlm import mask_tokens

META = torch.device("meta")
# random functions that take a generator, and how to find the device of what they draw for
INPUT_DRAWS = {torch.multinomial, torch.bernoulli, torch.normal, torch.poisson, torch.Tensor.random_,
               torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.bernoulli_, torch.Tensor.exponential_,
               torch.Tensor.geometric_, torch.Tensor.cauchy_, torch.Tensor.log_normal_, torch.nn.functional.dropout}
FACTORY_DRAWS = {torch.rand, torch.randn, torch.randint, torch.randperm, torch.rand_like, torch.randn_like,
                 torch.randint_like}


class GeneratorDeviceGuard(TorchFunctionMode):
    """Fail every random draw whose generator is not on the device of the tensor it draws for."""

    def __init__(self):
        super().__init__()
        self.draws = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        generator = kwargs.get("generator")
        if generator is not None and (func in INPUT_DRAWS or func in FACTORY_DRAWS):
            self.draws += 1
            if func in INPUT_DRAWS or func.__name__.endswith("_like"):
                target = args[0].device
            else:
                target = torch.device(kwargs.get("device") or "cpu")
            if generator.device.type != target.type:
                raise AssertionError(f"{func.__name__} draws on {target} with a generator on {generator.device}")
        return func(*args, **kwargs)


def tiny_gpt(device):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=17, block_size=16, n_layer=1, n_head=2, n_embd=8)).to(device).eval()


def test_guard_catches_a_mismatched_draw():
    with GeneratorDeviceGuard(), pytest.raises(AssertionError, match="generator on cpu"):
        torch.multinomial(torch.ones(2, 5, device=META), 1, generator=make_generator(0, "cpu"))
    with GeneratorDeviceGuard(), pytest.raises(AssertionError, match="generator on cpu"):
        torch.randn(3, generator=make_generator(0, "cpu"), device=META)
    with GeneratorDeviceGuard() as guard:
        torch.multinomial(torch.ones(2, 5), 1, generator=make_generator(0, "cpu"))
    assert guard.draws == 1


def test_check_generator_names_both_devices_and_the_fix():
    check_generator(None, torch.zeros(1, device=META))
    check_generator(make_generator(0, "cpu"), torch.zeros(1))
    with pytest.raises(ValueError, match=r"generator is on cpu but `logits` is on meta.*make_generator"):
        check_generator(make_generator(0, "cpu"), torch.zeros(1, device=META), "logits")
    with pytest.raises(TypeError, match="torch.Generator"):
        check_generator(0, torch.zeros(1))


def test_check_generator_compares_cuda_indices():
    class OnCuda0(torch.Generator):  # reports a CUDA generator's device; needs no GPU (only .device is read)
        device = property(lambda self: torch.device("cuda", 0))

    with pytest.raises(ValueError, match=r"generator is on cuda:0 but `probs` is on cuda:1"):
        check_generator(OnCuda0(), types.SimpleNamespace(device=torch.device("cuda", 1)), "probs")
    check_generator(OnCuda0(), types.SimpleNamespace(device=torch.device("cuda", 0)), "probs")
    check_generator(OnCuda0(), types.SimpleNamespace(device=torch.device("cuda")), "probs")  # no index: current one


def test_make_generator_requires_the_device():
    with pytest.raises(TypeError):
        make_generator(0)  # the device must be stated at every call site


@pytest.mark.parametrize("call", [
    pytest.param(lambda g: sample(torch.zeros(2, 7, device=META), g), id="sample"),
    pytest.param(lambda g: next_token(torch.zeros(2, 7, device=META), None, SamplingConfig(top_k=3), g),
                 id="next_token"),
    pytest.param(lambda g: tiny_gpt(META).generate(torch.zeros(1, 3, dtype=torch.long, device=META), 2, g),
                 id="GPT.generate"),
    pytest.param(lambda g: generate_cached(tiny_gpt(META), torch.zeros(1, 3, dtype=torch.long, device=META), 2,
                                           SamplingConfig(), g), id="generate_cached"),
    pytest.param(lambda g: generate_uncached(tiny_gpt(META), torch.zeros(1, 3, dtype=torch.long, device=META), 2,
                                             SamplingConfig(), g), id="generate_uncached"),
])
def test_sampling_apis_refuse_a_generator_on_another_device(call):
    with GeneratorDeviceGuard(), pytest.raises(ValueError, match="generator is on cpu"):
        call(make_generator(0, "cpu"))


def test_position_and_mask_draws_happen_where_the_generator_is():
    # Batches and MLM plans draw on the generator's device on purpose and move the result to the data.
    data = torch.arange(100)
    with GeneratorDeviceGuard() as guard:
        idx, targets = sample_batch(data, 4, 8, make_generator(0, "cpu"), device=META)
        assert idx.device == META and targets.shape == (4, 8)
        inputs, labels = mask_tokens(torch.zeros(2, 8, dtype=torch.long, device=META), mask_id=1, vocab_size=17,
                                     generator=make_generator(0, "cpu"))
        assert inputs.device == META and labels.device == META
    assert guard.draws >= 3


def test_addition_batches_refuse_a_generator_on_another_device():
    # Chapter 04's addition problems are drawn where the model trains, so the generator must live there too.
    with GeneratorDeviceGuard(), pytest.raises(ValueError, match=r"generator is on cpu but `idx` is on meta"):
        train_batch(4, 2, make_generator(0, "cpu"), META)
    with GeneratorDeviceGuard() as guard:
        idx, targets = train_batch(4, 2, make_generator(0, "cpu"), "cpu")
    assert idx.shape == targets.shape == (4, 8) and guard.draws >= 2


def test_cpu_and_smoke_profiles_mean_cpu_even_with_an_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(profile="cpu") == torch.device("cpu")
    assert pick_device(profile="smoke") == torch.device("cpu")
    assert pick_device(profile="gpu") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device(profile="cpu") == torch.device("cpu")
    assert pick_device(profile="gpu") == torch.device("mps")
    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    assert pick_device() == torch.device("cpu")


def test_the_gpu_profile_without_an_accelerator_warns_that_it_runs_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="COURSE_PROFILE=cpu"):
        assert pick_device(profile="gpu") == torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cpu profile on the CPU is what was asked for: no warning
        assert pick_device(profile="cpu") == torch.device("cpu")


def test_seed_everything_returns_a_cpu_generator():
    assert seed_everything(3).device == torch.device("cpu")


def test_timed_returns_the_result_and_seconds():
    result, seconds = timed(sorted, [3, 1, 2])
    assert result == [1, 2, 3] and 0 <= seconds < 1
    with pytest.raises(TypeError, match="fn must be callable"):
        timed(3)


def test_synchronize_is_a_no_op_on_the_cpu_and_refuses_unknown_devices():
    synchronize("cpu")
    synchronize(torch.device("cpu"))
    synchronize()  # every accelerator present: none here
    with pytest.raises(RuntimeError):
        synchronize("not-a-device")


def test_synchronize_waits_for_the_device_it_is_given(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("cuda", device)))
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append(("mps", None)))
    synchronize("cuda:1")
    synchronize("mps")
    synchronize("cpu")
    assert calls == [("cuda", torch.device("cuda:1")), ("mps", None)]


class Float64OffCpuGuard(TorchFunctionMode):
    """Pretend that marked CPU tensors live on an accelerator without float64 (MPS), and fail any operation that would
    make a float64 tensor there, turn one into a numpy array (``.numpy()``, ``np.asarray``) or draw for one with a CPU
    generator. A tensor marked with :func:`on_accelerator`, and whatever is computed from it, stays "on the
    accelerator" until ``.cpu()`` or ``.to("cpu", ...)`` brings it back; the values are ordinary CPU values, so the
    code under test runs for real."""

    @staticmethod
    def _moves_to_cpu(func, args, kwargs) -> bool:
        if func is torch.Tensor.cpu:
            return True
        targets = list(args[1:]) + [kwargs.get("device")]
        return func is torch.Tensor.to and any(isinstance(t, (str, torch.device)) and torch.device(t).type == "cpu"
                                               for t in targets)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat_inputs = list(args) + list(kwargs.values())
        flat_inputs += [x for a in flat_inputs if isinstance(a, (list, tuple)) for x in a]
        from_accelerator = any(getattr(a, "_on_accelerator", False) for a in flat_inputs
                               if isinstance(a, torch.Tensor))
        name = getattr(func, "__name__", func)
        if from_accelerator and func in (torch.Tensor.numpy, torch.Tensor.__array__):
            raise AssertionError(f"{name} of a tensor on the accelerator (numpy needs .cpu() first)")
        generator = kwargs.get("generator")
        if from_accelerator and isinstance(generator, torch.Generator) and generator.device.type == "cpu":
            raise AssertionError(f"{name} draws for a tensor on the accelerator with a CPU generator")
        out = func(*args, **kwargs)
        if not from_accelerator:
            return out
        if self._moves_to_cpu(func, args, kwargs):
            return out.view_as(out) if getattr(out, "_on_accelerator", False) else out  # .cpu() may return self
        for t in out if isinstance(out, (list, tuple)) else [out]:
            if isinstance(t, torch.Tensor):
                if t.dtype == torch.float64:
                    raise AssertionError(f"{name} made a float64 tensor on the accelerator")
                t._on_accelerator = True
        return out


def on_accelerator(t: torch.Tensor) -> torch.Tensor:
    t = t.view_as(t)
    t._on_accelerator = True
    return t


def test_the_float64_guard_catches_float64_made_on_the_accelerator():
    x = on_accelerator(torch.randn(3))
    with Float64OffCpuGuard(), pytest.raises(AssertionError, match="float64 tensor on the accelerator"):
        (x * 2).double().cpu()
    with Float64OffCpuGuard():
        assert (x * 2).cpu().double().dtype == torch.float64  # moved first: fine
        assert x.to("cpu", torch.float64).dtype == torch.float64
        assert not getattr(x.cpu(), "_on_accelerator", False)


def test_the_float64_guard_catches_numpy_and_cpu_generators_on_the_accelerator():
    x = on_accelerator(torch.rand(3))
    with Float64OffCpuGuard(), pytest.raises(AssertionError, match="numpy needs .cpu"):
        x.numpy()
    with Float64OffCpuGuard(), pytest.raises(AssertionError, match="numpy needs .cpu"):
        np.asarray(x * 2)
    with Float64OffCpuGuard(), pytest.raises(AssertionError, match="CPU generator"):
        torch.multinomial(x, 1, generator=make_generator(0, "cpu"))
    with Float64OffCpuGuard():
        assert np.asarray(x.cpu()).shape == (3,) and x.detach().cpu().numpy().dtype == np.float32
        torch.multinomial(x.cpu(), 1, generator=make_generator(0, "cpu"))
        assert x.tolist() == x.cpu().tolist()  # .tolist() and .item() work on every device


def test_beam_search_and_cast_outcomes_form_float64_on_the_cpu():
    # MPS has no float64: beam search's scores and cast_outcomes' product must be formed after moving to the CPU
    from course_utils.generate.beam_search import beam_search
    from course_utils.parallel.precision import cast_outcomes

    table = torch.randn(17, 17, generator=make_generator(0, "cpu"))  # next-token logits given the last token
    with Float64OffCpuGuard():
        result = beam_search(lambda ids: on_accelerator(table[ids[:, -1]]), on_accelerator(torch.tensor([3])),
                             num_beams=3, max_new_tokens=4)
        outcomes = cast_outcomes(on_accelerator(torch.logspace(-9, 6, 50)), scale=2.0)
    expected = beam_search(lambda ids: table[ids[:, -1]], torch.tensor([3]), num_beams=3, max_new_tokens=4)
    assert torch.equal(result.ids, expected.ids) and result.score == expected.score
    assert outcomes == cast_outcomes(torch.logspace(-9, 6, 50), scale=2.0)


def test_score_ids_forms_its_float64_token_losses_on_the_cpu():
    # score_ids keeps per-token losses in float64: on MPS they must be moved to the CPU before the cast
    from course_utils.evaluate.scoring import score_ids

    table = torch.randn(11, 11, generator=make_generator(1, "cpu"))  # (V, V) next-token logits given the last token
    ids = torch.randint(0, 11, (40,), generator=make_generator(2, "cpu"))  # (N,)
    with Float64OffCpuGuard():
        result = score_ids(lambda chunk: on_accelerator(table[chunk]), ids, window=8, stride=3, progress=False)
    expected = score_ids(lambda chunk: table[chunk], ids, window=8, stride=3, progress=False)
    assert result.token_nats.dtype == torch.float64 and torch.equal(result.token_nats, expected.token_nats)


def test_checks_and_sign_flip_p_form_their_float64_on_the_cpu(capsys):
    # the exercise checks compare answers, and sign_flip_p its differences, in float64: tensors on any device
    from course_utils import checks
    from course_utils.evaluate.significance import sign_flip_p

    g = make_generator(3, "cpu")
    x = torch.randn(2, 3, generator=g)  # (2, 3)
    few = torch.tensor([0.5, -0.25, 1.0, 0.75, -2.0, 0.125, 1.5, 0.0])  # (8,) sizes differ: every sign pattern
    many = torch.randn(20, generator=g)  # (20,) more than 16: random sign patterns from a CPU generator
    with Float64OffCpuGuard():
        checks.check_close("a tensor on the accelerator", on_accelerator(x + 1e-9), on_accelerator(x))
        checks.check_equal("a tensor on the accelerator", on_accelerator(x), on_accelerator(x.clone()))
        answer = checks.finite_float_tensor("a tensor on the accelerator", on_accelerator(x))
        p_few, p_many = sign_flip_p(on_accelerator(few)), sign_flip_p(on_accelerator(many), draws=200)
    assert capsys.readouterr().out.count("[pass]") == 2
    assert answer.dtype == torch.float64 and torch.equal(answer, x.double())
    assert p_few == sign_flip_p(few) and p_many == sign_flip_p(many, draws=200)


def test_calibration_and_auroc_metrics_move_scores_to_the_cpu_before_numpy():
    # chapters 08 and 10 score confidences that may come straight from the model: numpy only after .cpu()
    from course_utils.classify.metrics import calibrated_ece_samples, top_label_ece
    from course_utils.rag import calibration as cal
    from course_utils.rag.auroc_comparison import auroc_permutation_test, compare_aurocs, delong_test

    g = make_generator(4, "cpu")
    probs = torch.softmax(2 * torch.randn(24, 3, generator=g), dim=-1)  # (N, L)
    targets = torch.randint(0, 3, (24,), generator=g)  # (N,)
    confidence, correct = probs.max(1).values, probs.argmax(1) == targets  # (N,), (N,)
    other = torch.rand(24, generator=g)  # (N,) a second signal on the same answers
    assert 2 <= int(correct.sum()) <= 22  # both classes, two of each at least (DeLong)

    def results(mark):
        c, y = mark(confidence), mark(correct)
        bins = cal.reliability_bins(c, y, n_bins=5)
        return [top_label_ece(mark(probs), mark(targets), n_bins=5),
                calibrated_ece_samples(mark(probs), 4, make_generator(5, "cpu"), n_bins=5).tolist(),
                cal.expected_calibration_error(c, y, n_bins=5), bins.counts, bins.mean_confidence, bins.accuracy,
                cal.abstention_curve(c, y), cal.abstain_at(c, y, 0.6), cal.auroc(c, y), cal.roc_curve(c, y),
                cal.auroc_resolution(y), delong_test(c, mark(other), y),
                auroc_permutation_test(c, mark(other), y, draws=50, exact_up_to=0),
                compare_aurocs(c, mark(other), y, small_class=2)]

    with Float64OffCpuGuard():
        guarded = results(on_accelerator)
    np.testing.assert_equal(guarded, results(lambda t: t))


def test_exact_search_and_the_attention_heatmap_move_tensors_to_the_cpu_before_numpy():
    import matplotlib.pyplot as plt

    from course_utils.model.masks import causal_mask
    from course_utils.plotting import attention_heatmap
    from course_utils.rag.ann import exact_topk, recall_against_exact

    g = make_generator(6, "cpu")
    embeddings = torch.nn.functional.normalize(torch.randn(30, 8, generator=g), dim=-1)  # (N, C) unit rows
    queries = torch.randn(4, 8, generator=g)  # (Q, C)
    allowed = causal_mask(5)  # (T, T)
    weights = torch.softmax(torch.randn(5, 5, generator=g).masked_fill(~allowed, -math.inf), dim=-1)  # (T, T)
    fig, (ax, ax_cpu) = plt.subplots(1, 2)
    try:
        with Float64OffCpuGuard():
            scores, ids = exact_topk(on_accelerator(embeddings), on_accelerator(queries), 3)  # (Q, 3) each
            recall = recall_against_exact(on_accelerator(ids[:, [0, 2, 1]]), on_accelerator(ids), 3)
            image = attention_heatmap(ax, on_accelerator(weights), on_accelerator(allowed), "on the accelerator")
        shown = attention_heatmap(ax_cpu, weights, allowed, "on the CPU").get_array()
        np.testing.assert_equal(np.ma.getmaskarray(image.get_array()), np.ma.getmaskarray(shown))
        np.testing.assert_equal(image.get_array().filled(-1), shown.filled(-1))
    finally:
        plt.close(fig)
    expected_scores, expected_ids = exact_topk(embeddings, queries, 3)
    assert torch.equal(scores, expected_scores) and torch.equal(ids, expected_ids) and recall == 1.0


def test_reference_solutions_build_their_constants_on_the_inputs_device():
    """A reference solution reused on CUDA or MPS inputs must not mix in a CPU-made constant (a causal mask, RoPE's
    frequencies): on an accelerator that raises a device mismatch. ``meta`` stands in for the accelerator."""
    from course_utils.solutions import ch02, ch09
    x = torch.zeros(2, 3, 5, 8, device=META)  # (B, H, T, D)
    assert ch09.apply_rotary(x, torch.arange(5, device=META)).device == META
    q, kv = torch.zeros(1, 4, 5, 8, device=META), torch.zeros(1, 2, 5, 8, device=META)  # 4 query heads, 2 KV heads
    assert ch09.grouped_query_attention(q, kv, kv).device == META
    assert ch02.document_causal_mask(torch.zeros(5, dtype=torch.long, device=META)).device == META
    assert ch02.packed_position_ids(torch.zeros(1, 5, dtype=torch.long, device=META)).device == META
