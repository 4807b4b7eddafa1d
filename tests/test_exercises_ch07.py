"""Chapter 07's exercise checks accept the reference solution and other correct forms, and reject likely wrong
answers without revealing the expected value."""

import math
import re

import pytest
import torch

from course_utils.exercises import ch07 as ex
from course_utils.solutions import ch07 as sol


from exercise_helpers import assert_hidden, rejects, refuses_reference_then_passes  # noqa: E402


# ---------- exercise 1: epsilon filter ----------

def epsilon_float64_list(logits, epsilon):  # correct, computed in float64 and returned as nested lists
    probs = logits.double().softmax(-1)
    out = []
    for row_l, row_p in zip(logits.tolist(), probs.tolist()):
        best = max(range(len(row_p)), key=row_p.__getitem__)
        out.append([z if (p >= epsilon or i == best) else -math.inf for i, (z, p) in enumerate(zip(row_l, row_p))])
    return out


def epsilon_no_top(logits, epsilon):  # forgets to keep the most likely token
    return logits.masked_fill(logits.softmax(-1) < epsilon, -math.inf)


def epsilon_on_logits(logits, epsilon):  # compares logits, not probabilities
    out = logits.masked_fill(logits < epsilon, -math.inf)
    return out.scatter(-1, logits.argmax(-1, keepdim=True), logits.max(-1, keepdim=True).values)


def epsilon_returns_probs(logits, epsilon):  # returns filtered probabilities instead of logits
    return sol.epsilon_filter(logits, epsilon).softmax(-1)


def epsilon_top_k_instead(logits, epsilon):  # a package filter in disguise: top-k with k = 1/epsilon
    from course_utils.generate.sampling import top_k_filter
    return top_k_filter(logits, int(1 / epsilon))


def epsilon_transformers_one_liner(logits, epsilon):  # the library's warper: the answer, not the learner's code
    from transformers.generation import EpsilonLogitsWarper
    return EpsilonLogitsWarper(epsilon)(None, logits)


def epsilon_transformers_eta(logits, epsilon):  # the eta warper's threshold is at most epsilon: also the library
    from transformers.generation import EtaLogitsWarper
    return EtaLogitsWarper(epsilon)(None, logits)


# removes probabilities equal to epsilon too ("<=" for "below"); rejected because it protects only one of four tied
# maxima (an "<=" answer that protects every tied maximum passes: the check's comment says why that is untestable)
def epsilon_at_or_below(logits, epsilon):
    probs = logits.softmax(-1)
    remove = (probs <= epsilon).scatter(-1, probs.argmax(-1, keepdim=True), False)
    return logits.masked_fill(remove, -math.inf)


def epsilon_batch_max(logits, epsilon):  # keeps the batch's single most likely token, not each row's
    probs = logits.softmax(-1)
    remove = probs < epsilon
    remove[probs == probs.max()] = False
    return logits.masked_fill(remove, -math.inf)


def epsilon_flat_argmax(logits, epsilon):  # argmax without dim: one flat index into the whole batch
    probs = logits.softmax(-1)
    remove = probs < epsilon
    remove.view(-1)[probs.argmax()] = False
    return logits.masked_fill(remove, -math.inf)


def epsilon_exp_over_sum(logits, epsilon):  # correct: probabilities written out, without subtracting the maximum
    probs = logits.exp() / logits.exp().sum(-1, keepdim=True)
    remove = (probs < epsilon).scatter(-1, probs.argmax(-1, keepdim=True), False)
    return logits.masked_fill(remove, -math.inf)


def epsilon_via_log_softmax(logits, epsilon):  # correct: probabilities through exp(log_softmax)
    remove = (logits.log_softmax(-1).exp() < epsilon).scatter(-1, logits.argmax(-1, keepdim=True), False)
    return logits.masked_fill(remove, -math.inf)


def test_epsilon_check():
    ex.check_epsilon_filter(sol.epsilon_filter)
    ex.check_epsilon_filter(epsilon_float64_list)
    ex.check_epsilon_filter(epsilon_via_log_softmax)
    ex.check_epsilon_filter(epsilon_exp_over_sum)
    rejects(ex.check_epsilon_filter, epsilon_at_or_below)
    for wrong in (epsilon_no_top, epsilon_on_logits, epsilon_returns_probs, epsilon_top_k_instead, epsilon_batch_max,
                  epsilon_flat_argmax):
        rejects(ex.check_epsilon_filter, wrong)


def test_epsilon_check_refuses_the_transformers_warpers():
    from transformers.generation import EpsilonLogitsWarper
    hand = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    # without the switch the one-liner is a correct answer, so only the switch can reject it
    assert torch.equal(epsilon_transformers_one_liner(hand, 0.1), sol.epsilon_filter(hand, 0.1))
    for shortcut in (epsilon_transformers_one_liner, epsilon_transformers_eta):
        assert "switched off" in rejects(ex.check_epsilon_filter, shortcut)
    ex.check_epsilon_filter(sol.epsilon_filter)  # a correct answer still passes after a refused one
    assert torch.equal(EpsilonLogitsWarper(0.1)(None, hand), sol.epsilon_filter(hand, 0.1))  # and the warper is back


def epsilon_via_min_p_filter(logits, epsilon):  # min-p at epsilon / p_max keeps exactly p >= epsilon, row by row
    from course_utils.generate.sampling import min_p_filter, top_k_filter
    rows = []
    for row in logits:
        ratio = epsilon / float(row.softmax(-1).max())
        rows.append(min_p_filter(row[None], ratio)[0] if ratio < 1 else top_k_filter(row[None], 1)[0])
    return torch.stack(rows)


def epsilon_via_private_min_p(logits, epsilon):  # the package's _min_p takes a ratio per row
    from course_utils.generate import sampling
    return sampling._min_p(logits, epsilon / logits.softmax(-1).amax(-1, keepdim=True))


def epsilon_via_transformers_min_p(logits, epsilon):
    from transformers.generation import MinPLogitsWarper
    return torch.stack([MinPLogitsWarper(min(epsilon / float(row.softmax(-1).max()), 1.0))(None, row[None].clone())[0]
                        for row in logits])


@pytest.mark.parametrize("shortcut, name", [(epsilon_via_min_p_filter, "sampling.min_p_filter"),
                                            (epsilon_via_private_min_p, "sampling._min_p"),
                                            (epsilon_via_transformers_min_p, "MinPLogitsWarper.__call__")])
def test_epsilon_check_refuses_min_p_filters_and_restores_them(shortcut, name):
    hand = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.04, 0.06, 0.3, 0.6]]))
    # min-p at epsilon / p_max is epsilon sampling, so the shortcut is right without the switch (the test can fail)
    assert torch.equal(shortcut(hand, 0.1), sol.epsilon_filter(hand, 0.1))
    message = rejects(ex.check_epsilon_filter, shortcut)
    assert "switched off" in message and name in message, message
    assert torch.equal(shortcut(hand, 0.1), sol.epsilon_filter(hand, 0.1))  # restored
    ex.check_epsilon_filter(sol.epsilon_filter)


# ---------- exercise 2: a repetition penalty that fades with distance ----------

def decaying_vectorised(logits, prev_ids, penalty, window):  # correct, vectorised, float64
    B, T = prev_ids.shape
    recent = prev_ids[:, -window:]  # (B, W)
    W = recent.shape[1]
    d = (W - 1 - torch.arange(W)).double().expand(B, W)  # distance of each position from the last id
    nearest = torch.full(logits.shape, float("inf"), dtype=torch.float64).scatter_reduce(1, recent, d, "amin")
    theta = torch.where(nearest.isinf(), torch.ones_like(nearest), penalty ** (1 - nearest / window))
    z = logits.double()
    return torch.where(z > 0, z / theta, z * theta)


def decaying_package_shortcut(logits, prev_ids, penalty, window):  # one call of the package: no fading
    from course_utils.generate.sampling import apply_repetition_penalty
    return apply_repetition_penalty(logits, prev_ids[:, -window:], penalty)


def decaying_first_occurrence(logits, prev_ids, penalty, window):  # uses the oldest occurrence, not the newest
    out = logits.clone()
    for b in range(logits.shape[0]):
        recent = prev_ids[b, -window:].tolist()
        first = {}
        for pos, token in enumerate(recent):
            first.setdefault(token, len(recent) - 1 - pos)
        for token, d in first.items():
            theta = penalty ** (1 - d / window)
            out[b, token] = out[b, token] / theta if out[b, token] > 0 else out[b, token] * theta
    return out


def decaying_no_sign_rule(logits, prev_ids, penalty, window):  # divides negative logits too
    out = sol.decaying_repetition_penalty(logits, prev_ids, penalty, window)
    return torch.where(logits < 0, logits * logits / out, out)


def decaying_no_window(logits, prev_ids, penalty, window):
    return sol.decaying_repetition_penalty(logits, prev_ids, penalty, prev_ids.shape[1])


def test_decaying_penalty_check():
    ex.check_decaying_penalty(sol.decaying_repetition_penalty)
    ex.check_decaying_penalty(decaying_vectorised)
    for wrong in (decaying_package_shortcut, decaying_first_occurrence, decaying_no_sign_rule, decaying_no_window):
        rejects(ex.check_decaying_penalty, wrong)


# ---------- exercise 3: KV cache with a sliding window ----------

def test_mistral_check():
    ex.check_mistral_kv_cache(sol.mistral_kv_cache)
    gib = 32 * 2 * 8 * 128 * 4096 * 2 / 2**30
    ex.check_mistral_kv_cache(lambda: (torch.tensor(4096), torch.tensor(2**29, dtype=torch.int64).item() / 2**30))
    ex.check_mistral_kv_cache(lambda: [4097, 32 * 2 * 8 * 128 * 4097 * 2 / 2**30])  # "i - W to i", inclusive
    ex.check_mistral_kv_cache(lambda: torch.tensor([4096.0, gib]))
    wrong = {"no rolling buffer": (8192, 32 * 2 * 8 * 128 * 8192 * 2 / 2**30),
             "32 KV heads": (4096, 32 * 2 * 32 * 128 * 4096 * 2 / 2**30),
             "32 KV heads, no window": (8192, 32 * 2 * 32 * 128 * 8192 * 2 / 2**30),
             "keys only": (4096, 32 * 8 * 128 * 4096 * 2 / 2**30),
             "keys only and no rolling buffer: the GiB cancel": (8192, 32 * 8 * 128 * 8192 * 2 / 2**30),
             "float32": (4096, 32 * 2 * 8 * 128 * 4096 * 4 / 2**30),
             "GB not GiB": (4096, 32 * 2 * 8 * 128 * 4096 * 2 / 1e9),
             "the GiB alone": gib,
             "positions as a string": ("4096", gib),
             "three values": (4096, gib, 0)}
    for name, value in wrong.items():
        message = rejects(ex.check_mistral_kv_cache, lambda value=value: value)
        assert re.search(r"(?<![\d.])0\.50*(?!\d)", message) is None, name  # the expected value is never shown
        assert "4096" not in message and "4,096" not in message, name


# ---------- exercise 4: novel n-grams ----------

def novelty_tensor(sample, reference, n):  # correct, returns a 0-d tensor
    s, r = torch.tensor(sample), torch.tensor(reference)
    if len(s) < n:
        return torch.tensor(0.0)
    grams = s.unfold(0, n, 1)
    known = r.unfold(0, n, 1) if len(r) >= n else torch.empty(0, n, dtype=torch.long)
    novel = [not (known == g).all(-1).any() for g in grams]
    return torch.tensor(novel, dtype=torch.float32).mean()


def novelty_unique(sample, reference, n):  # counts unique n-grams only
    grams = {tuple(sample[i:i + n]) for i in range(len(sample) - n + 1)}
    known = {tuple(reference[i:i + n]) for i in range(len(reference) - n + 1)}
    return sum(g not in known for g in grams) / len(grams) if grams else 0.0


def novelty_copied(sample, reference, n):  # returns the copied share instead
    return 1 - sol.novel_ngram_fraction(sample, reference, n) if len(sample) >= n else 0.0


def novelty_off_by_one(sample, reference, n):  # drops the last n-gram
    grams = [tuple(sample[i:i + n]) for i in range(len(sample) - n)]
    known = {tuple(reference[i:i + n]) for i in range(len(reference) - n + 1)}
    return sum(g not in known for g in grams) / len(grams) if grams else 0.0


def novelty_reference_off_by_one(sample, reference, n):  # drops the reference's last n-gram
    grams = [tuple(sample[i:i + n]) for i in range(len(sample) - n + 1)]
    known = {tuple(reference[i:i + n]) for i in range(len(reference) - n)}
    return sum(g not in known for g in grams) / len(grams) if grams else 0.0


def novelty_substring(sample, reference, n):  # looks n-grams up as substrings of the joined ids: "1 2" in "11 2"
    grams = [" ".join(map(str, sample[i:i + n])) for i in range(len(sample) - n + 1)]
    text = " ".join(map(str, reference))
    return sum(g not in text for g in grams) / len(grams) if grams else 0.0


def novelty_distinct(sample, reference, n):  # distinct-n of the sample, the package's measure, not novelty
    from course_utils.evaluate.diversity import distinct_n
    return distinct_n([sample], n)


def novelty_short_reference_zero(sample, reference, n):  # makes the 0.0 guard symmetric: a short reference gives 0.0
    if len(sample) < n or len(reference) < n:
        return 0.0
    return sol.novel_ngram_fraction(sample, reference, n)


def novelty_unfold(sample, reference, n):  # right whenever both are at least n long; unfold raises otherwise
    if len(sample) < n:
        return 0.0
    grams, known = torch.tensor(sample).unfold(0, n, 1), torch.tensor(reference).unfold(0, n, 1)
    return sum(not (known == g).all(-1).any() for g in grams) / len(grams)


def test_novelty_check():
    ex.check_novel_ngram_fraction(sol.novel_ngram_fraction)
    ex.check_novel_ngram_fraction(novelty_tensor)
    for wrong in (novelty_unique, novelty_copied, novelty_off_by_one, novelty_reference_off_by_one, novelty_substring,
                  novelty_distinct, novelty_short_reference_zero, novelty_unfold):
        rejects(ex.check_novel_ngram_fraction, wrong)
    for wrong in (novelty_short_reference_zero, novelty_unfold):  # every n-gram is novel there
        assert "a reference shorter than n" in rejects(ex.check_novel_ngram_fraction, wrong)
    # both pass every case of one-digit ids; the case with two-digit ids whose last reference bigram recurs in the
    # sample (right: 2/3) rejects them without showing the right value
    for wrong in (novelty_reference_off_by_one, novelty_substring):
        message = rejects(ex.check_novel_ngram_fraction, wrong)
        assert "two digits" in message
        assert_hidden(message, [ex._novelty_reference([1, 2, 5, 6], [11, 2, 9, 5, 6], 2)])


@pytest.mark.parametrize("check, via_reference, right", [
    (ex.check_epsilon_filter, lambda z, e: ex._epsilon_reference(z, e), sol.epsilon_filter),
    (ex.check_decaying_penalty, lambda z, p, t, w: ex._decaying_reference(z, p, t, w), sol.decaying_repetition_penalty),
    (ex.check_novel_ngram_fraction, lambda s, r, n: ex._novelty_reference(s, r, n), sol.novel_ngram_fraction),
])
def test_checks_refuse_their_own_reference_and_restore_it(check, via_reference, right):
    # without the switch the private reference is a correct answer, so only the switch can reject it
    refuses_reference_then_passes(check, via_reference, right)


def test_stub_falls_back_to_the_reference(capsys):
    from course_utils import checks

    def stub(*args):
        raise NotImplementedError

    checks.exercise("1", stub, sol.epsilon_filter, ex.check_epsilon_filter)
    assert "[todo] exercise 1" in capsys.readouterr().out


# ---------- added by the mutation audit ----------

def decaying_over_the_ids_seen(logits, prev_ids, penalty, window):  # d / min(window, T): wrong when T < window
    return sol.decaying_repetition_penalty(logits, prev_ids, penalty, min(window, prev_ids.shape[1]))


def test_decaying_penalty_rejects_a_window_cut_to_the_context():
    rejects(ex.check_decaying_penalty, decaying_over_the_ids_seen)


def novelty_empty_is_novel(sample, reference, n):  # "nothing copied" read as 1.0 when the sample has no n-gram
    return sol.novel_ngram_fraction(sample, reference, n) if len(sample) >= n else 1.0


def test_novelty_rejects_another_value_for_a_sample_shorter_than_n():
    rejects(ex.check_novel_ngram_fraction, novelty_empty_is_novel)


def _in_place_penalty(logits, prev_ids, penalty, window):  # right values, but written into the caller's logits
    for b in range(logits.shape[0]):
        recent = prev_ids[b, -window:].tolist()
        for token, d in {t: len(recent) - 1 - i for i, t in enumerate(recent)}.items():
            theta = penalty ** (1 - d / window)
            z = logits[b, token]
            logits[b, token] = z / theta if z > 0 else z * theta
    return logits


def test_decaying_penalty_rejects_an_answer_that_changes_its_logits():
    assert "clone" in rejects(ex.check_decaying_penalty, _in_place_penalty)
    ex.check_decaying_penalty(sol.decaying_repetition_penalty)


def test_mistral_kv_message_gives_no_direction():  # a constant answer must not be found by bisection on the message
    for wrong in (0.25, 1.0, 4.0):
        message = rejects(ex.check_mistral_kv_cache, lambda: (4096, wrong))
        assert "too large" not in message and "too small" not in message
    for positions in (2048, 4098, 8192):
        message = rejects(ex.check_mistral_kv_cache, lambda: (positions, 0.5))
        assert "too large" not in message and "too small" not in message
    rejects(ex.check_mistral_kv_cache, lambda: (4096, str(sol.mistral_kv_cache()[1])))  # a string is not a number
