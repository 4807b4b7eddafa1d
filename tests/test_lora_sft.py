"""SFT: chat formatting checked token by token, label masking, the loss against Hugging Face's, and a tiny random
Llama that learns a toy task. The tiny tokenizer and model here are also used by tests/test_lora_answers.py."""

import math

import pytest
import torch

from course_utils.device import make_generator, torch_threads
from course_utils.lora.sft import (IGNORE_INDEX, SFTConfig, SFTExample, chat_example, collate_sft, end_of_turn_id,
                                   masked_lm_loss, response_loss, response_nll_per_row, train_sft)

DEFAULT_SYSTEM = "Be brief."
CHATML = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n"
          + DEFAULT_SYSTEM + "<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_chat_tokenizer():
    """A byte-level tokenizer with no merges (one token per UTF-8 byte, ids 3..258), the three ChatML special tokens
    (ids 0..2, <|im_end|> = 2 as in SmolLM2) and a ChatML template that, like SmolLM2's, inserts a default system
    prompt when none is given."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    vocab.update({c: i + 3 for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                        additional_special_tokens=["<|im_start|>", "<|endoftext|>"])
    tokenizer.chat_template = CHATML
    return tokenizer


def tiny_llama(vocab_size: int = 259, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def full_render_ids(tokenizer, messages):
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def check_round_trip(tokenizer, user, answer, system):
    example = chat_example(tokenizer, user, answer, system=system)
    messages = ([] if system is None else [{"role": "system", "content": system}])
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    newline = list(tokenizer("\n", add_special_tokens=False)["input_ids"])
    # The only difference: the template closes the assistant turn with "<|im_end|>\n"; the response stops at <|im_end|>.
    assert list(example.prompt_ids + example.response_ids) + newline == full_render_ids(tokenizer, messages)
    assert example.response_ids[-1] == end_of_turn_id(tokenizer)
    return example


def test_chat_example_matches_the_full_template_render_token_by_token():
    tok = tiny_chat_tokenizer()
    user = 'Which emotion? Answer with one word.\nSentence: "Yesterday my cat had to be put down."'
    default = check_round_trip(tok, user, "sadness", system=None)
    custom = check_round_trip(tok, user, "sadness", system="You label emotions.")
    empty = check_round_trip(tok, user, "sadness", system="")  # an empty system message, not the default one
    assert DEFAULT_SYSTEM not in tok.decode(empty.prompt_ids)
    assert tok.decode(default.prompt_ids).startswith("<|im_start|>system\n" + DEFAULT_SYSTEM)
    assert tok.decode(default.prompt_ids).endswith("<|im_start|>assistant\n")
    assert ("You label emotions." in tok.decode(custom.prompt_ids)
            and DEFAULT_SYSTEM not in tok.decode(custom.prompt_ids))
    assert tok.decode(default.response_ids) == "sadness<|im_end|>"
    prompt_only = chat_example(tok, user)
    assert prompt_only == SFTExample(default.prompt_ids, ())


@pytest.mark.slow
def test_chat_example_on_the_smollm2_tokenizer():
    from transformers import AutoTokenizer

    from course_utils.cache import is_complete_dir
    from course_utils.model.pretrained import smollm2_cache_path

    if not is_complete_dir(smollm2_cache_path()):
        pytest.skip("the SmolLM2 cache is not built (load_smollm2() builds it)")
    tok = AutoTokenizer.from_pretrained(smollm2_cache_path())
    user = 'Which emotion does this sentence express?\nSentence: "So, someone keyed my car in the car park."'
    for answer in ("anger", "fear", "sadness", "joy", "The emotion is anger."):
        check_round_trip(tok, user, answer, system=None)
        check_round_trip(tok, user, answer, system="")
    with_default = chat_example(tok, user)
    assert "named SmolLM" in tok.decode(with_default.prompt_ids)
    assert len(chat_example(tok, user, system="").prompt_ids) < len(with_default.prompt_ids)


def test_end_of_turn_id_rejects_a_tokenizer_without_im_end():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(vocab={"[UNK]": 0, "hi": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == 0  # the unknown token's id, not an error
    with pytest.raises(ValueError, match="no '<\\|im_end\\|>' token"):
        end_of_turn_id(tokenizer)
    assert end_of_turn_id(tiny_chat_tokenizer()) == 2


def test_chat_example_rejects_bad_arguments():
    tok = tiny_chat_tokenizer()
    with pytest.raises(ValueError, match="user"):
        chat_example(tok, "")
    with pytest.raises(TypeError, match="answer"):
        chat_example(tok, "hi", answer=3)


def test_collate_pads_right_and_masks_prompt_and_padding():
    a, b = SFTExample((5, 6, 7), (8, 2)), SFTExample((5,), (9, 9, 9, 2))
    batch = collate_sft([a, b], pad_id=2)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 2], [5, 9, 9, 9, 2]]
    c = SFTExample((4,), (2,))
    batch = collate_sft([a, c], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 2], [4, 2, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    m = IGNORE_INDEX
    assert batch["labels"].tolist() == [[m, m, m, 8, 2], [m, 2, m, m, m]]
    unmasked = collate_sft([a, c], pad_id=0, mask_prompt=False)
    assert unmasked["labels"].tolist() == [[5, 6, 7, 8, 2], [4, 2, m, m, m]]
    assert all(t.dtype == torch.long and t.device.type == "cpu" for t in batch.values())
    with pytest.raises(TypeError):
        collate_sft([], pad_id=0)
    with pytest.raises(ValueError, match="pad_id"):
        collate_sft([a], pad_id=-1)
    with pytest.raises(ValueError, match="prompt token"):
        collate_sft([SFTExample((), (1, 2))], pad_id=0)


def random_examples(n, generator, vocab_size=64):
    out = []
    for _ in range(n):
        p, r = torch.randint(2, 8, (2,), generator=generator).tolist()
        ids = torch.randint(3, vocab_size, (p + r,), generator=generator).tolist()
        out.append(SFTExample(tuple(ids[:p]), tuple(ids[p:]) + (2,)))
    return out


@pytest.mark.parametrize("mask_prompt", [True, False])
def test_losses_equal_hugging_face_loss(mask_prompt):
    model = tiny_llama(vocab_size=64)
    batch = collate_sft(random_examples(5, make_generator(0, "cpu")), pad_id=0, mask_prompt=mask_prompt)
    with torch.no_grad():
        out = model(**batch)  # Hugging Face shifts the labels itself
        ours = masked_lm_loss(out.logits, batch["labels"])
        cheap = response_loss(model, batch)
    torch.testing.assert_close(ours, out.loss)
    torch.testing.assert_close(cheap, out.loss, rtol=1e-5, atol=1e-5)
    assert math.isfinite(ours.item()) and ours.item() > 0


def test_response_nll_per_row_sums_each_rows_labelled_tokens():
    model = tiny_llama(vocab_size=64)
    batch = collate_sft(random_examples(5, make_generator(1, "cpu")), pad_id=0, mask_prompt=True)
    with torch.no_grad():
        summed, tokens = response_nll_per_row(model, batch)
        logits = model(**batch).logits
    assert summed.shape == tokens.shape == (5,)
    for i in range(5):  # each row on its own, through the full loss
        counted = int((batch["labels"][i, 1:] != IGNORE_INDEX).sum())
        assert int(tokens[i]) == counted
        row_loss = masked_lm_loss(logits[i:i + 1], batch["labels"][i:i + 1])
        torch.testing.assert_close(summed[i] / counted, row_loss, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(summed.sum() / tokens.sum(), response_loss(model, batch), rtol=1e-5, atol=1e-6)


def test_response_loss_gradients_match_the_full_loss():
    model = tiny_llama(vocab_size=64)
    batch = collate_sft(random_examples(4, make_generator(1, "cpu")), pad_id=0)
    grads = []
    for loss_fn in (lambda: masked_lm_loss(model(**batch).logits, batch["labels"]),
                    lambda: response_loss(model, batch)):
        model.zero_grad()
        loss_fn().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for full, cheap in zip(*grads):
        torch.testing.assert_close(cheap, full, rtol=1e-4, atol=1e-6)


def test_losses_reject_bad_labels():
    logits = torch.zeros(2, 4, 8)
    with pytest.raises(ValueError, match="shape"):
        masked_lm_loss(logits, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        masked_lm_loss(logits, torch.full((2, 4), IGNORE_INDEX))
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        masked_lm_loss(torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.long))
    only_first = torch.full((2, 4), IGNORE_INDEX)
    only_first[:, 0] = 3  # position 0 is never a target: nothing predicts it
    with pytest.raises(ValueError, match="empty"):
        masked_lm_loss(logits, only_first)


def test_masked_lm_loss_is_float32_for_bfloat16_logits():
    logits = torch.randn(2, 5, 11, generator=make_generator(0, "cpu")).bfloat16()
    labels = torch.randint(0, 11, (2, 5), generator=make_generator(1, "cpu"))
    labels[0, 1] = IGNORE_INDEX
    loss = masked_lm_loss(logits, labels)
    assert loss.dtype == torch.float32
    keep = labels[:, 1:] != IGNORE_INDEX
    picked = torch.log_softmax(logits[:, :-1].double(), -1).gather(2, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
    assert loss.item() == pytest.approx(-picked[keep].mean().item(), rel=1e-6)


def toy_task(n=64, seed=0):
    """Prompt (1, x, 3) with x one of 8 tokens 10..17; response (x + 20, <|im_end|>=2). A model that ignores the
    prompt can at best spread the first response token over 8 values: loss (ln 8 + 0) / 2 = 1.04 per response token."""
    xs = torch.randint(10, 18, (n,), generator=make_generator(seed, "cpu")).tolist()
    return [SFTExample((1, x, 3), (x + 20, 2)) for x in xs]


def test_train_sft_learns_a_toy_task_and_ends_in_eval_mode():
    model = tiny_llama(vocab_size=64)
    config = SFTConfig(steps=60, batch_size=16, lr=1e-2, warmup_steps=5)
    with torch_threads(1):  # a 32-wide model: more threads only add contention on a shared machine
        history = train_sft(model, toy_task(), config, make_generator(0, "cpu"), pad_id=0, progress=False)
    assert history.steps == list(range(1, 61)) and len(history.loss) == 60 and history.seconds > 0
    assert history.loss[0] > 3.0  # near ln(64) = 4.16: the random model knows nothing
    assert sum(history.loss[-10:]) / 10 < 0.2  # far below 1.04, the best loss without reading the prompt (seen: 0.03)
    assert not model.training
    batch = collate_sft([SFTExample((1, x, 3), (x + 20, 2)) for x in range(10, 18)], pad_id=0)
    with torch.no_grad():
        predicted = model(**batch).logits[:, 2].argmax(-1)  # the token after the prompt
    assert predicted.tolist() == list(range(30, 38))


def test_train_sft_trains_only_what_requires_grad_and_is_deterministic():
    config = SFTConfig(steps=5, batch_size=8, lr=1e-2)
    runs = []
    for _ in range(2):
        model = tiny_llama(vocab_size=64)
        model.requires_grad_(False)
        model.model.layers[-1].requires_grad_(True)
        frozen = model.model.layers[0].self_attn.q_proj.weight.clone()
        history = train_sft(model, toy_task(), config, make_generator(7, "cpu"), pad_id=0, progress=False)
        assert torch.equal(model.model.layers[0].self_attn.q_proj.weight, frozen)
        runs.append((history.loss, model.model.layers[-1].mlp.up_proj.weight.clone()))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])


def test_train_sft_equals_a_hand_written_adamw_loop_with_warmup_decay_and_clipping():
    """Linear warm-up (lr / 2, then lr), decoupled weight decay 0.1 and clipping to a global norm of 0.05 (below
    every step's gradient norm here, so every step is clipped by a different factor), against torch's AdamW driven
    by hand on the same batches."""
    examples = toy_task(n=16)
    config = SFTConfig(steps=3, batch_size=4, lr=1e-2, warmup_steps=2, weight_decay=0.1, grad_clip=0.05)
    model, reference = tiny_llama(vocab_size=64), tiny_llama(vocab_size=64)
    with torch_threads(1):
        history = train_sft(model, examples, config, make_generator(5, "cpu"), pad_id=0, progress=False)
        optimizer = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.1)
        generator, losses, norms = make_generator(5, "cpu"), [], []
        reference.train()
        for lr in (5e-3, 1e-2, 1e-2):
            order = torch.randperm(len(examples), generator=generator)[:4].tolist()
            batch = collate_sft([examples[i] for i in order], pad_id=0)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad()
            loss = reference(**batch).loss
            loss.backward()
            norms.append(torch.nn.utils.clip_grad_norm_(list(reference.parameters()), 0.05).item())
            optimizer.step()
            losses.append(loss.item())
    assert min(norms) > 0.05  # clipping was active at every step
    assert history.loss == pytest.approx(losses, rel=1e-5)
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-6)


def test_without_prompt_masking_the_first_loss_counts_every_position():
    examples, config = toy_task(), SFTConfig(steps=1, batch_size=8, lr=1e-3, mask_prompt=False)
    model = tiny_llama(vocab_size=64)
    expected_order = torch.randperm(len(examples), generator=make_generator(3, "cpu"))[:8].tolist()
    batch = collate_sft([examples[i] for i in expected_order], pad_id=0, mask_prompt=False)
    with torch.no_grad():
        expected = model(**batch).loss
    history = train_sft(model, examples, config, make_generator(3, "cpu"), pad_id=0, progress=False)
    assert history.loss[0] == pytest.approx(expected.item(), rel=1e-5)


def test_train_sft_rejects_bad_inputs():
    model = tiny_llama(vocab_size=64)
    gen = make_generator(0, "cpu")
    config = SFTConfig(steps=1, batch_size=4, lr=1e-3)
    with pytest.raises(ValueError, match="exceeds"):
        train_sft(model, toy_task(n=3), config, gen, pad_id=0)
    with pytest.raises(ValueError, match="response"):
        train_sft(model, [SFTExample((1, 2), ())] * 4, config, gen, pad_id=0)
    with pytest.raises(ValueError, match="response"):  # one prompt-only example among answered ones
        train_sft(model, toy_task(n=3) + [SFTExample((1, 2), ())], config, gen, pad_id=0)
    assert len(train_sft(model, toy_task(n=4), config, gen, pad_id=0, progress=False).loss) == 1  # batch = all 4
    with pytest.raises(TypeError, match="SFTConfig"):
        train_sft(model, toy_task(), {"steps": 1}, gen, pad_id=0)
    with pytest.raises(TypeError, match="Generator"):
        train_sft(model, toy_task(), config, 0, pad_id=0)
    with pytest.raises(ValueError, match="pad_id"):
        train_sft(model, toy_task(), config, gen, pad_id=-1)
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        train_sft(model, toy_task(), config, gen, pad_id=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps"), ({"batch_size": 1.5}, "batch_size"), ({"lr": 0.0}, "lr"), ({"lr": math.inf}, "lr"),
    ({"warmup_steps": -1}, "warmup_steps"), ({"weight_decay": -0.1}, "weight_decay"), ({"grad_clip": 0}, "grad_clip"),
])
def test_sft_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SFTConfig(**{"steps": 10, "batch_size": 4, "lr": 1e-3, **kwargs})
    with pytest.raises(TypeError, match="mask_prompt"):
        SFTConfig(steps=10, batch_size=4, lr=1e-3, mask_prompt=1)


# peft 0.21.2's get_peft_model reads transformers 5's deprecated `is_gradient_checkpointing`: not ours to fix
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_response_loss_sees_through_a_peft_wrapper():
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(tiny_llama(vocab_size=64),
                                peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # B starts at zero in peft: make the adapters matter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1, generator=make_generator(0, "cpu"))
    batch = collate_sft(random_examples(4, make_generator(2, "cpu")), pad_id=0)
    with torch.no_grad():
        torch.testing.assert_close(response_loss(model, batch), model(**batch).loss, rtol=1e-5, atol=1e-5)


def test_numpy_scalars_are_taken_and_stored_as_python_numbers():
    import numpy as np

    examples = toy_task(n=8)
    assert all(torch.equal(collate_sft(examples, pad_id=np.int64(5))[k], collate_sft(examples, pad_id=5)[k])
               for k in ("input_ids", "attention_mask", "labels"))
    config = SFTConfig(steps=np.int64(1), batch_size=np.int32(4), lr=np.float32(0.5), warmup_steps=np.int64(2),
                       weight_decay=np.float64(0.1), grad_clip=np.float32(np.inf))
    assert config == SFTConfig(steps=1, batch_size=4, lr=0.5, warmup_steps=2, weight_decay=0.1, grad_clip=math.inf)
    assert [type(getattr(config, f)) for f in ("steps", "batch_size", "warmup_steps", "lr", "weight_decay",
                                               "grad_clip")] == [int] * 3 + [float] * 3
    for kwargs in ({"steps": True}, {"lr": True}, {"lr": np.float32(np.nan)}, {"grad_clip": np.float64(0.0)}):
        with pytest.raises(ValueError):
            SFTConfig(**{"steps": 10, "batch_size": 4, "lr": 1e-3, **kwargs})
    losses = [train_sft(tiny_llama(vocab_size=64), examples, SFTConfig(steps=1, batch_size=4, lr=1e-3),
                        make_generator(0, "cpu"), pad_id=pad, progress=False).loss for pad in (np.int64(0), 0)]
    assert losses[0] == losses[1]
