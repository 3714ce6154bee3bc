"""Smoke test of the schedule ablation at a tiny budget: every arm runs, results are written, a rerun skips."""
import csv

from scripts import schedule_ablation


def test_ablation_writes_results_and_resumes(tiny_config_file, tiny_data, tmp_path, capsys):
    train_dir, val_dir = tiny_data
    argv = ["--output_dir", str(tmp_path / "abl"), "--genie_config", str(tiny_config_file),
            "--train_data_dir", str(train_dir), "--val_data_dir", str(val_dir), "--schedules", "cosine,linear",
            "--seeds", "0,1", "--stage1_steps", "4", "--stage2_steps", "4", "--eval_every_n_steps", "2",
            "--max_eval_steps", "1", "--final_eval_examples", "8", "--batch_size", "4"]
    text = schedule_ablation.main(argv)
    root = tmp_path / "abl"
    assert {"results.md", "results.csv", "ablation.png"} <= {p.name for p in root.iterdir()}
    rows = list(csv.DictReader((root / "results.csv").open()))
    assert [r["arm"] for r in rows] == ["cosine", "linear", "scratch"] and all(r["seeds"] == "2" for r in rows)
    assert "stage 2 only, 8 steps" in text and "masked pretraining" in text
    capsys.readouterr()
    schedule_ablation.main(argv)  # a rerun trains nothing
    out = capsys.readouterr().out
    assert out.count("[skip]") == 6 and "saved final model" not in out
