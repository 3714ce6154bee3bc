"""Every stage starts with one block naming its data, model, steps and global batch, objective,
evaluation, output folder, resume point and trackers."""
import masked_pretrain
import train
from tests.conftest import run_argv


def banner(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("*****"))
    return lines[start:start + 8]


def test_stage_one_banner_names_its_masking_and_data(tiny_config_file, tiny_data, tmp_path, capsys):
    masked_pretrain.main(run_argv(tiny_config_file, tiny_data, tmp_path / "s1", "--mask_schedule", "linear",
                                  max_train_steps=2, gradient_accumulation_steps=2))
    head, train_line, val_line, model, steps, optimizer, evaluation, output = banner(capsys.readouterr().out)
    assert head == ("***** masked_pretrain: masked pretraining, mask ratio linear 0.8 -> 0.1, pattern random "
                    "(frame 0 visible), temporal attention bidirectional *****")
    assert train_line.startswith(f"train: {tiny_data[0]} (v1.1 layout): ") and " windows of 4 frames from " in train_line
    assert val_line.startswith(f"val: {tiny_data[1]} (v1.1 layout): ")
    assert model.startswith("model: ") and "2 layers, d_model 64, T 4, S 16 (4x4), vocabulary 256" in model
    assert f"(config: {tiny_config_file})" in model
    assert steps.startswith("steps: 2 (") and steps.endswith("global batch 8 = 4 per device x 1 process(es) x 2 accumulation")
    assert optimizer.startswith("optimizer: adamw, learning rate 0.0003, linear schedule, 0 warm-up steps")
    assert evaluation == ("evaluation: at the end only on 1 batches (loss and teacher-forced CE with references on each "
                          "window's last frame); final: loss and teacher-forced CE with references on each window's "
                          "last frame (scripts/evaluate.py gives the full metric)")
    assert output == f"output: {tmp_path / 's1'} (checkpoint every 1000 steps); starts from step 0; trackers: none"


def test_stage_two_banner_names_a_label_scarce_subset_and_the_resume_point(tiny_config_file, tiny_data, tmp_path,
                                                                            capsys):
    out = tmp_path / "s2"
    argv = run_argv(tiny_config_file, tiny_data, out, "--drop_actions", train_segment_fraction=0.5,
                    checkpointing_steps=2, max_train_steps=2)
    train.main(argv)
    first = banner(capsys.readouterr().out)
    assert first[0].startswith("***** autoregressive: next-frame prediction, MaskGIT masking")
    assert " of " in first[1] and first[1].endswith("actions withheld")  # n of N segments
    assert first[6].endswith("final: full: sampling, rollouts, shuffled actions")
    train.main(["--output_dir", str(out), "--resume_from_checkpoint", "latest", "--max_train_steps", "3"])
    resumed = banner(capsys.readouterr().out)
    assert resumed[1] == first[1] and f"resumes from {out / 'step_2'} at step 2" in resumed[7]


def test_a_builtin_world_with_both_data_folders_given_is_said_to_do_nothing(tiny_config_file, tiny_data, tmp_path,
                                                                            capsys):
    train.main(run_argv(tiny_config_file, tiny_data, tmp_path / "run", "--builtin_world", "steered",
                        max_train_steps=1, eval_loss_only=True))
    assert ("note: --builtin_world steered does nothing here: --train_data_dir and --val_data_dir name the data"
            in capsys.readouterr().out.splitlines())
