"""The character-level recipes hold the settings their docstring states (course_utils/train/recipes.py): the
nanoGPT small CPU baseline, the AdamW course recipe and the Muon course recipe, each changing only what it says."""

from dataclasses import replace

from course_utils.train.recipes import adamw_char_recipe, baseline_char_recipe, course_char_recipe


def test_adamw_recipe_changes_only_what_its_docstring_lists():
    base, adamw = baseline_char_recipe(65), adamw_char_recipe(65)
    t = adamw.train
    assert (t.max_steps, t.lr, t.min_lr, t.warmup_steps, t.eval_interval) == (700, 6e-3, 6e-4, 50, 100)
    assert (t.eval_train_split, t.fused_optimizer, adamw.batch_size) == (False, True, 24)
    assert replace(t, max_steps=2000, lr=1e-3, min_lr=1e-4, warmup_steps=100, eval_interval=250,
                   eval_train_split=base.train.eval_train_split,
                   fused_optimizer=base.train.fused_optimizer) == base.train  # everything else is the baseline's
    assert (base.train.beta1, base.train.beta2, base.train.optimizer) == (0.9, 0.99, "adamw")


def test_course_recipe_adds_muon_and_a_shorter_schedule():
    adamw, course = adamw_char_recipe(65), course_char_recipe(65)
    t = course.train
    assert (t.optimizer, t.muon_lr, t.muon_momentum, t.lr) == ("muon", 0.05, 0.85, 6e-3)
    assert (t.max_steps, t.warmup_steps, t.eval_interval, course.batch_size) == (200, 25, 40, 48)
    assert replace(t, optimizer="adamw", muon_lr=adamw.train.muon_lr, muon_momentum=adamw.train.muon_momentum,
                   max_steps=700, warmup_steps=50, eval_interval=100) == adamw.train
