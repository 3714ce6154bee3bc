"""Stage 1: the collator, every masking field, the schedule following the optimizer step, the hand-off."""
import dataclasses
import json
import shutil

import pytest
import torch

import masked_pretrain
import train
from data import get_masked_pretrain_collator
from genie.errors import CheckpointError, ConfigError
from genie.evaluation.scores import EvalOptions
from genie.masking.schedules import mask_ratio_at, training_progress
from genie.model.stmaskgit import STMaskGIT
from genie.training.arguments import TrainingArguments
from genie.training.masked_pretrain_config import MaskedPretrainConfig
from genie.training.objectives import MaskedPretrainObjective
from genie.training.run_logging import read_metrics
from genie.training.trainer import run_training
from tests.conftest import run_argv


def windows(b=16, t=4, s=16):
    return {"input_ids": torch.randint(0, 256, (b, t, s), generator=torch.Generator().manual_seed(0))}


def test_collator_masks_exactly_the_scheduled_count_per_frame(tiny_config):
    collate = get_masked_pretrain_collator(MaskedPretrainConfig(), tiny_config)
    batch = windows()
    for step in (0, 5, 9):  # steps 0..9 of 10: progress = step / 9
        out = collate(batch, generator=torch.Generator().manual_seed(step), progress=training_progress(step, 10))
        count = round(mask_ratio_at(step / 9, 0.8, 0.1, "cosine") * 16)
        assert (out["loss_mask"][:, 1:].sum(-1) == count).all()
        assert not out["loss_mask"][:, 0].any()  # mask_all_frames=False keeps frame 0 visible
        assert torch.equal(out["loss_mask"], out["input_ids"] == tiny_config.mask_token_id)
        assert torch.equal(out["labels"], batch["input_ids"])
    everything = get_masked_pretrain_collator(MaskedPretrainConfig(mask_all_frames=True), tiny_config)
    out = everything(batch, generator=torch.Generator().manual_seed(0), progress=0.0)
    assert (out["loss_mask"].sum(-1) == round(0.8 * 16)).all()


# Every masking field, and a change that must change the masks (with the base settings it needs).
FIELD_CHANGES = {
    "initial_mask_ratio": ({}, {"initial_mask_ratio": 0.5}),
    "final_mask_ratio": ({}, {"final_mask_ratio": 0.5}),
    "mask_schedule": ({}, {"mask_schedule": "linear"}),
    "exponential_k": ({"mask_schedule": "exponential"}, {"exponential_k": 1.0}),
    "mask_all_frames": ({}, {"mask_all_frames": True}),
    "mask_pattern": ({}, {"mask_pattern": "block"}),
    "block_count": ({"mask_pattern": "block"}, {"block_count": 1}),
    "block_aspect_min": ({"mask_pattern": "block", "block_count": 1}, {"block_aspect_min": 0.2}),
    "block_aspect_max": ({"mask_pattern": "block", "block_count": 1}, {"block_aspect_max": 4.0}),
    "prompt_frame_period": ({}, {"prompt_frame_period": 2}),
    "lattice_stride": ({}, {"lattice_stride": 2}),
    "lattice_offset": ({"lattice_stride": 2}, {"lattice_offset": 1}),
    "dynamics_focus": ({"mask_pattern": "dynamics"}, {"dynamics_focus": 0.9}),
}


@pytest.mark.parametrize("field", sorted(FIELD_CHANGES))
def test_every_masking_field_changes_the_masks(field, tiny_config):
    base, change = FIELD_CHANGES[field]
    batch = windows(b=64)

    def masks(**settings):
        collate = get_masked_pretrain_collator(MaskedPretrainConfig(**settings), tiny_config)
        out = collate(batch, generator=torch.Generator().manual_seed(0), progress=training_progress(3, 10))
        return out["loss_mask"]

    assert not torch.equal(masks(**base), masks(**base, **change))


def test_no_masking_field_is_left_untested():
    fields = {f.name for f in dataclasses.fields(MaskedPretrainConfig)}
    assert fields - set(FIELD_CHANGES) == {"temporal_attention", "eval_mask_ratios"}  # tested below


def test_objective_attention_mode_and_eval_ratios(tiny_config):
    objective = MaskedPretrainObjective(tiny_config, MaskedPretrainConfig(eval_mask_ratios="0.3,0.6"))
    assert objective.temporal_attention == "bidirectional"
    causal = MaskedPretrainObjective(tiny_config, MaskedPretrainConfig(temporal_attention="causal"))
    assert causal.temporal_attention == "causal"
    model = STMaskGIT(tiny_config.replace(temporal_attention="bidirectional")).eval()
    batch = {**windows(b=4), "actions": torch.zeros(4, 4, 2)}
    with torch.no_grad():
        metrics = objective.evaluate(model, [batch], lambda x: x, EvalOptions(seed=0))
    assert {"masked_loss@0.3", "masked_loss@0.6", "masked_accuracy@0.3", "tf_cross_entropy"} <= set(metrics)


@pytest.mark.parametrize("settings, message", [
    ({"initial_mask_ratio": 1.2}, "--initial_mask_ratio 1.2 must be in \\[0, 1\\]"),
    ({"final_mask_ratio": -0.5}, "--final_mask_ratio -0.5 must be in"),
    ({"mask_schedule": "cos"}, "--mask_schedule 'cos' is unknown"),
    ({"mask_pattern": "blob"}, "--mask_pattern 'blob' is unknown"),
    ({"eval_mask_ratios": "a,b"}, "--eval_mask_ratios"),
    ({"lattice_stride": 2, "lattice_offset": 3}, "--lattice_offset 3"),
])
def test_invalid_settings(settings, message):
    with pytest.raises(ConfigError, match=message):
        MaskedPretrainConfig(**settings)


class RecordingObjective(MaskedPretrainObjective):
    """Records, for every micro-batch, the optimizer step it belongs to and the masked count per frame."""
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def make_batch(self, batch, step, total_steps, generator):
        out = super().make_batch(batch, step, total_steps, generator)
        counts = out["loss_mask"][:, 1:].sum(-1).unique().tolist()
        self.seen.append((step, counts))
        return out


def run_stage1(tiny_config, tiny_data, out, steps, **extra):
    train_dir, val_dir = tiny_data
    args = TrainingArguments(genie_config="unused", train_data_dir=str(train_dir), val_data_dir=str(val_dir),
                             output_dir=str(out), max_train_steps=steps, per_device_train_batch_size=4,
                             log_every_n_steps=1, eval_every_n_steps=1000, checkpointing_steps=4, max_eval_steps=1,
                             **extra)
    config = tiny_config.replace(temporal_attention="bidirectional")
    objective = RecordingObjective(config, MaskedPretrainConfig(mask_schedule="linear"))
    run_training(args, objective, STMaskGIT(config))
    return objective.seen


def expected_count(step, total):
    return [round(mask_ratio_at(step / (total - 1), 0.8, 0.1, "linear") * 16)]


@pytest.mark.parametrize("schedule", ["cosine", "linear", "exponential"])
@pytest.mark.parametrize("total_steps", [2, 5, 1000])
def test_first_step_trains_at_the_initial_and_last_step_at_the_final_ratio(tiny_config, schedule, total_steps):
    masking = MaskedPretrainConfig(initial_mask_ratio=0.8, final_mask_ratio=0.1, mask_schedule=schedule)
    objective = MaskedPretrainObjective(tiny_config, masking)
    assert objective.step_metrics(0, total_steps)["mask_ratio"] == 0.8
    assert objective.step_metrics(total_steps - 1, total_steps)["mask_ratio"] == pytest.approx(0.1, abs=1e-12)


def test_ratio_follows_the_optimizer_step_with_workers(tiny_config, tiny_data, tmp_path):
    seen = run_stage1(tiny_config, tiny_data, tmp_path / "w", 8, dataloader_num_workers=2)
    assert [s for s, _ in seen] == list(range(8))
    assert all(counts == expected_count(s, 8) for s, counts in seen)
    logged = [r["mask_ratio"] for r in read_metrics(tmp_path / "w" / "metrics.jsonl") if "mask_ratio" in r]
    assert logged == pytest.approx([mask_ratio_at(s / 7, 0.8, 0.1, "linear") for s in range(8)])


def test_ratio_follows_the_optimizer_step_with_accumulation(tiny_config, tiny_data, tmp_path):
    seen = run_stage1(tiny_config, tiny_data, tmp_path / "a", 6, gradient_accumulation_steps=3)
    assert [s for s, _ in seen] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5]
    assert all(counts == expected_count(s, 6) for s, counts in seen)


def test_ratio_follows_the_optimizer_step_after_resume(tiny_config, tiny_data, tmp_path):
    full = run_stage1(tiny_config, tiny_data, tmp_path / "r", 8)
    shutil.rmtree(tmp_path / "r" / "step_8")
    resumed = run_stage1(tiny_config, tiny_data, tmp_path / "r", 8, resume_from_checkpoint="latest")
    assert [s for s, _ in resumed] == [4, 5, 6, 7]
    assert resumed == full[4:]


def stage1_args(tiny_config_file, tiny_data, out, *extra):
    return run_argv(tiny_config_file, tiny_data, out, *extra, per_device_train_batch_size=8, learning_rate="3e-3",
                    log_every_n_steps=10, eval_every_n_steps=100, checkpointing_steps=100, max_eval_steps=2)


@pytest.fixture(scope="module")
def stage1_run(tiny_config_file, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1") / "mp"
    masked_pretrain.main(stage1_args(tiny_config_file, tiny_data, out, "--max_train_steps", "200",
                                     "--initial_mask_ratio", "0.8", "--final_mask_ratio", "0.1",
                                     "--mask_schedule", "cosine", "--mask_all_frames"))
    return out


def test_two_stage_run(stage1_run, tiny_config_file, tiny_data, tmp_path):
    records = read_metrics(stage1_run / "metrics.jsonl")
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0]
    assert {"masked_pretrain_final", "step_100", "step_200", "pictures"} <= {p.name for p in stage1_run.iterdir()}
    assert (stage1_run / "pictures" / "eval_step_100.png").is_file()
    final_config = json.loads((stage1_run / "masked_pretrain_final" / "config.json").read_text())
    assert final_config["temporal_attention"] == "bidirectional"
    evals = [r for r in records if "val/masked_loss@0.5" in r]
    assert len(evals) == 2 and evals[-1]["val/masked_loss@0.5"] < evals[0]["val/masked_loss@0.5"]

    for source in (stage1_run, stage1_run / "step_100", stage1_run / "masked_pretrain_final"):
        out = tmp_path / source.name
        metrics = train.main(stage1_args(tiny_config_file, tiny_data, out, "--max_train_steps", "2",
                                         "--masked_pretrain_checkpoint", str(source)))
        run = json.loads((out / "config.json").read_text())
        assert run["masked_pretrain_checkpoint"].endswith(source.name if source.name != "mp" else "masked_pretrain_final")
        assert run["genie_config"]["temporal_attention"] == "causal"
        assert metrics["val/tf_cross_entropy"] > 0


def test_hand_off_starts_from_the_stage1_weights(stage1_run, tiny_config_file, tiny_data, tmp_path):
    # With a zero learning rate nothing moves: the stage-2 final model equals the stage-1 weights.
    from safetensors.torch import load_file
    train.main(stage1_args(tiny_config_file, tiny_data, tmp_path / "frozen", "--max_train_steps", "1",
                           "--masked_pretrain_checkpoint", str(stage1_run), "--learning_rate", "1e-30"))
    a = load_file(stage1_run / "masked_pretrain_final" / "model.safetensors")
    b = load_file(tmp_path / "frozen" / "final_model" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k]) for k in a)


def test_hand_off_refuses_another_architecture(stage1_run, tiny_data, tmp_path):
    from tests.conftest import TINY
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**TINY, "num_layers": 3}))
    with pytest.raises(CheckpointError, match=r"missing \[decoder\.layers\.2\..*"):
        train.main(stage1_args(other, tiny_data, tmp_path / "o", "--max_train_steps", "1",
                               "--masked_pretrain_checkpoint", str(stage1_run)))
    assert not (tmp_path / "o").exists()  # nothing written
    with pytest.raises(CheckpointError, match="does not exist"):
        train.main(stage1_args(other, tiny_data, tmp_path / "o", "--masked_pretrain_checkpoint", str(tmp_path / "x")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="did stage 1 finish"):
        train.main(stage1_args(other, tiny_data, tmp_path / "o", "--masked_pretrain_checkpoint", str(tmp_path / "empty")))


# The masked-pretraining write-up's form: stage-1 fields beside the architecture in one JSON file.
WRITE_UP_FIELDS = {"initial_mask_ratio": 0.9, "final_mask_ratio": 0.05, "mask_schedule": "exponential",
                   "mask_all_frames": True}


def write_up_config(tmp_path):
    from tests.conftest import TINY

    path = tmp_path / "with_stage1.json"
    path.write_text(json.dumps({**TINY, **WRITE_UP_FIELDS}))
    return str(path)


def stage1_from_file(tiny_data, tmp_path, *flags):
    train_dir, val_dir = tiny_data
    masked_pretrain.main(["--genie_config", write_up_config(tmp_path), "--train_data_dir", str(train_dir),
                          "--val_data_dir", str(val_dir), "--output_dir", str(tmp_path / "s1"), "--max_train_steps",
                          "2", "--per_device_train_batch_size", "4", "--max_eval_steps", "1", *flags])
    return json.loads((tmp_path / "s1" / "config.json").read_text())["masked_pretrain"]


def test_stage1_fields_in_the_config_file_are_the_defaults(tiny_data, tmp_path):
    used = stage1_from_file(tiny_data, tmp_path)
    assert {k: used[k] for k in WRITE_UP_FIELDS} == WRITE_UP_FIELDS


def test_flags_override_the_stage1_fields_of_the_config_file(tiny_data, tmp_path):
    used = stage1_from_file(tiny_data, tmp_path, "--mask_schedule", "linear", "--final_mask_ratio", "0.2")
    assert (used["mask_schedule"], used["final_mask_ratio"], used["initial_mask_ratio"]) == ("linear", 0.2, 0.9)


def test_train_py_ignores_the_stage1_fields_and_records_that(tiny_data, tmp_path, capsys):
    train_dir, val_dir = tiny_data
    train.main(["--genie_config", write_up_config(tmp_path), "--train_data_dir", str(train_dir), "--val_data_dir",
                str(val_dir), "--output_dir", str(tmp_path / "s2"), "--max_train_steps", "1",
                "--per_device_train_batch_size", "4", "--max_eval_steps", "1"])
    assert json.loads((tmp_path / "s2" / "config.json").read_text())["ignored_config_fields"] == WRITE_UP_FIELDS
    assert "ignores the stage-1 field(s)" in capsys.readouterr().out


def test_unknown_fields_beside_stage1_fields_are_still_refused(tmp_path):
    from genie.training.masked_pretrain_config import read_config_file

    path = tmp_path / "c.json"
    path.write_text(json.dumps({**json.loads(open(write_up_config(tmp_path)).read()), "mask_sched": "linear"}))
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['mask_sched'\]; known fields are .*"
                                          r"'initial_mask_ratio'.*'num_layers'"):
        read_config_file(path)
