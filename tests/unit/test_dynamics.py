"""Scores where the dynamics happen, with known answers: tokens that change vs static ones, action
sensitivity, and references a constant model cannot pass."""
import numpy as np
import pytest
import torch

from genie.evaluation.loop import evaluate_batches
from genie.evaluation.report import format_report, headline
from genie.evaluation.scores import EvalOptions
from genie.model.config import GenieConfig
from genie.model.factorization import factorize_token_ids
from genie.protocols import MaskGITModel
from tests.conftest import TINY

CONFIG = GenieConfig(**{**TINY, "T": 6})  # 4x4 tokens, 256 ids factorized 2 x 16, one 2-dim action stream


class ScriptedModel:
    """A MaskGITModel whose logits put all the mass on one token per position, chosen by `predict`
    from the (masked) input tokens and the actions: (B, T, S) tokens, (B, T, A) actions -> (B, T, S) ids."""

    def __init__(self, predict):
        self.config, self.predict = CONFIG, predict

    @property
    def mask_token_id(self) -> int:
        return CONFIG.mask_token_id

    def compute_logits(self, tokens, actions=None):
        actions = None if actions is None else actions[:, :tokens.shape[1]]  # decoders pass the row after too
        factors = factorize_token_ids(self.predict(tokens, actions), CONFIG.num_factored_vocabs,
                                      CONFIG.factored_vocab_size)
        return torch.nn.functional.one_hot(factors, CONFIG.factored_vocab_size).float() * 20.0

    def new_kv_cache(self):
        raise NotImplementedError  # these tests decode without a cache

    def compute_logits_cached(self, tokens, cache, actions=None, commit=0):
        raise NotImplementedError


def copy_previous(tokens, actions):
    """Each frame t predicted as frame t-1 (frame 0 as itself)."""
    return torch.cat([tokens[:, :1], tokens[:, :-1]], dim=1)


def windows(seed=0, batches=3, size=4):
    """Token windows where most tokens stay and a few change each frame (like a sprite over a background)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batches):
        tokens = np.repeat(rng.integers(0, 8, (size, 1, CONFIG.S)), CONFIG.T, axis=1)
        moving = rng.random((size, CONFIG.T, CONFIG.S)) < 0.2
        tokens = np.where(moving, rng.integers(100, 256, tokens.shape), tokens)
        out.append({"input_ids": torch.from_numpy(tokens), "actions": torch.from_numpy(
            rng.normal(size=(size, CONFIG.T, CONFIG.action_dim)).astype(np.float32))})
    return out


def log_probs_of(batches):
    counts = np.ones(CONFIG.image_vocab_size)
    for batch in batches:
        counts += np.bincount(batch["input_ids"].reshape(-1).numpy(), minlength=CONFIG.image_vocab_size)
    return np.log(counts / counts.sum())


def report_of(model, batches, **options):
    assert isinstance(model, MaskGITModel)
    return evaluate_batches(model, batches, EvalOptions(use_cache=False, **options), log_probs_of(batches))


def test_a_copy_model_scores_zero_on_changed_tokens_and_one_on_static_ones():
    batches = windows()
    report = report_of(ScriptedModel(copy_previous), batches)
    assert report["accuracy"] == pytest.approx(report["copy_previous_accuracy"], abs=1e-12)
    assert report["changed_accuracy"] == 0.0 and report["changed_argmax_accuracy"] == 0.0
    assert report["static_accuracy"] == 1.0 and report["changed_copy_previous_accuracy"] == 0.0
    assert 0.1 < report["changed_fraction"] < 0.4
    rollout = report["rollout"]  # a copy model's rollout equals copying the last prompt frame
    assert rollout["accuracy_per_horizon"] == rollout["copy_accuracy_per_horizon"]
    assert rollout["changed_accuracy"] == 0.0 and rollout["changed_copy_accuracy"] == 0.0


def test_the_changed_and_static_parts_add_up_to_the_whole():
    report = report_of(ScriptedModel(copy_previous), windows(seed=1))
    frac = report["changed_fraction"]
    for name in ("cross_entropy", "accuracy", "argmax_accuracy", "unigram_cross_entropy", "unigram_accuracy",
                 "copy_previous_accuracy"):
        whole = frac * report[f"changed_{name}"] + (1 - frac) * report[f"static_{name}"]
        assert whole == pytest.approx(report[name], rel=1e-12, abs=1e-12), name
    changed_tokens = round(frac * report["num_tokens"])
    assert changed_tokens == pytest.approx(frac * report["num_tokens"], abs=1e-6)  # a whole number of tokens


def test_a_constant_model_equals_the_most_frequent_token_and_is_told_so():
    batches = windows(seed=2)
    most_frequent = int(np.argmax(log_probs_of(batches)))
    report = report_of(ScriptedModel(lambda tokens, actions: torch.full_like(tokens, most_frequent)), batches)
    assert report["accuracy"] == report["unigram_accuracy"]
    assert report["changed_accuracy"] == report["changed_unigram_accuracy"]
    line = headline(report)
    assert "The model does NOT beat the unigram on CE (all tokens)" in line
    assert "the most frequent token on accuracy (all tokens)" in line
    assert "has not learned the dynamics" in line
    assert "**Result:** " + line in format_report(report)


def test_a_model_that_ignores_its_actions_has_action_sensitivity_zero():
    report = report_of(ScriptedModel(copy_previous), windows(seed=3))
    assert report["action_sensitivity"] == 0.0 and report["changed_action_sensitivity"] == 0.0
    assert report["action_sensitivity_windows"] == 12


def test_a_model_that_reads_its_actions_has_a_positive_action_sensitivity():
    batches = windows(seed=4)
    for batch in batches:  # every token of frame t is a function of the action at t
        batch["input_ids"] = (batch["actions"][..., :1] > 0).long().expand(-1, -1, CONFIG.S) * 7
    reader = ScriptedModel(lambda tokens, actions: (actions[..., :1] > 0).long().expand_as(tokens) * 7)
    report = report_of(reader, batches)
    assert report["cross_entropy"] < 1e-6 and report["action_sensitivity"] > 1.0
    assert report["changed_action_sensitivity"] > report["action_sensitivity"]  # the changes are what actions drive
    off = report_of(reader, batches, action_sensitivity=False)
    assert "action_sensitivity" not in off and off["cross_entropy"] == report["cross_entropy"]


def test_action_sensitivity_per_frame_shows_where_the_actions_are_read():
    """A model that reads its action at frame 1 only and copies the previous frame after it: sensitivity
    on frame 1's changed tokens, exactly 0 on every later frame's."""
    batches = windows(seed=4)
    for batch in batches:  # every token of frame t is a function of the action at t
        batch["input_ids"] = (batch["actions"][..., :1] > 0).long().expand(-1, -1, CONFIG.S) * 7

    def reads_at_frame_1(tokens, actions):
        predicted = copy_previous(tokens, actions)
        predicted[:, 1] = (actions[:, 1, :1] > 0).long().expand_as(tokens[:, 1]) * 7
        return predicted

    report = report_of(ScriptedModel(reads_at_frame_1), batches)
    per_frame = report["changed_action_sensitivity_per_frame"]
    assert len(per_frame) == CONFIG.T - 1 and per_frame[0] > 1.0
    assert [v for v in per_frame[1:] if v is not None] == [0.0] * sum(v is not None for v in per_frame[1:])
    assert sum(v is not None for v in per_frame[1:]) >= 3  # the later frames do have changed tokens
    assert "On changed tokens, per frame 1..5: +" in format_report(report)


def test_a_batch_of_one_window_is_left_out_of_action_sensitivity():
    batches = [{k: v[:1] for k, v in b.items()} for b in windows(seed=5)] + windows(seed=6, batches=1)
    report = report_of(ScriptedModel(copy_previous), batches)
    assert report["action_sensitivity_windows"] == 4  # only the batch of four could be shuffled


def test_changed_margins_have_bootstrap_intervals_and_a_small_evaluation_says_not_distinguishable():
    import numpy as np

    from genie.evaluation.loop import changed_margins
    from genie.evaluation.report import headline

    windows = {"changed_tokens": np.full(28, 10.0), "tf_correct_changed": np.array([3.0, 2.0] * 14),
               "unigram_correct_changed": np.array([2.0, 3.0] * 13 + [2.0, 2.0])}
    margins = changed_margins(windows, seed=0)
    accuracy = margins["accuracy_vs_most_frequent"]
    assert accuracy["margin"] == pytest.approx((70 - 69) / 280) and accuracy["windows"] == 28
    assert accuracy["changed_tokens"] == 280 and accuracy["low"] < 0 < accuracy["high"]
    assert changed_margins(windows, seed=0) == margins  # seeded
    report = {"cross_entropy": 0.3, "unigram_cross_entropy": 2.9, "accuracy": 0.95, "copy_previous_accuracy": 0.9,
              "unigram_accuracy": 0.2, "changed_fraction": 0.1, "changed_cross_entropy": 2.0,
              "changed_unigram_cross_entropy": 3.0, "changed_accuracy": 70 / 280, "changed_unigram_accuracy": 69 / 280,
              "changed_margins": margins}
    line = headline(report)
    assert "over 28 windows, 280 changed tokens" in line
    assert line.endswith("not distinguishable from the most frequent token on accuracy on the changed tokens: the "
                         "95% interval over windows includes 0.")
    clear = dict(report, changed_margins={})
    assert headline(clear).endswith("The model beats every reference.")


def test_withheld_actions_are_not_measured_rather_than_scored_zero():
    batches = windows(seed=7)
    for batch in batches:  # --drop_actions: every row withheld
        batch["actions"] = torch.full_like(batch["actions"], float("nan"))
    report = report_of(ScriptedModel(copy_previous), batches)
    assert report["action_sensitivity"] is None and report["action_sensitivity_windows"] == 0
    assert "Action sensitivity: not measured" in format_report(report)


def test_action_sensitivity_is_also_scored_where_the_action_changes():
    """Each action is kept for a while, then redrawn (a new row always differs); every token of frame t is
    7 when action t's first value is positive, else 0: tokens change only at new actions."""
    rng = np.random.default_rng(8)
    batches = []
    for _ in range(3):
        actions = np.zeros((4, CONFIG.T, 2), dtype=np.float32)
        for window in actions:
            for t in range(CONFIG.T):
                redraw = t == 0 or rng.random() < 0.5
                window[t] = (rng.choice([-1.0, 1.0]), rng.normal()) if redraw else window[t - 1]
        tokens = torch.from_numpy((actions[..., :1] > 0).astype(np.int64) * 7).expand(-1, -1, CONFIG.S)
        batches.append({"input_ids": tokens, "actions": torch.from_numpy(actions)})
    changed = sum(int((b["input_ids"][:, 1:] != b["input_ids"][:, :-1]).sum()) for b in batches)
    reader = ScriptedModel(lambda tokens, actions: (actions[..., :1] > 0).long().expand_as(tokens) * 7)
    report = report_of(reader, batches)
    assert report["new_action_changed_tokens"] == changed > 0
    assert report["new_action_changed_cross_entropy"] < 1e-6
    assert report["new_action_changed_action_sensitivity"] > 1.0
    assert "changed tokens of frames whose action differs from the previous frame's" in format_report(report)
    history = report_of(ScriptedModel(copy_previous), batches)
    assert history["new_action_changed_action_sensitivity"] == 0.0
