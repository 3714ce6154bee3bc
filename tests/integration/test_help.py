"""--help of every command reads well: the whole description, every default shown, no duplicated text,
and stage 1's own output folder."""
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

COMMANDS = ["train.py", "masked_pretrain.py", "scripts/evaluate.py", "scripts/generate.py", "scripts/ablate.py",
            "scripts/export_onnx.py", "scripts/chaos.py", "scripts/download_1x.py"]


def help_of(command: str) -> str:
    result = subprocess.run([sys.executable, command, "--help"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_the_whole_description_and_every_default(command):
    text = help_of(command)
    doc = (REPO_ROOT / command).read_text().split('"""')[1]
    first_paragraph = " ".join(doc.split("\n\n")[0].split())
    assert first_paragraph in " ".join(text.split())  # not cut after the first line
    flags = re.findall(r"^  (--[a-z_0-9]+)", text, re.M)
    entries = re.split(r"\n  (?=--)", text.split("options:")[1])
    without_default = [e.split()[0] for e in entries if e.startswith("--") and "(default:" not in e]
    assert flags and without_default == []
    helps = [" ".join(e.split("\n", 1)[1].split()) for e in entries if "\n" in e and e.startswith("--no_")]
    assert all(h.startswith("Turn --") for h in helps)


def test_stage1_help_shows_its_own_output_folder():
    entry = help_of("masked_pretrain.py").split("options:")[1].split("  --output_dir")[1].split("\n  --")[0]
    assert "(default: runs/masked_pretrain)" in " ".join(entry.split())


@pytest.mark.parametrize("script", ["main.sh", "atari.sh"])
def test_shell_jobs_print_their_usage_and_refuse_arguments(script):
    """--help prints the variables the job reads (and starts nothing); any other argument is one line, exit 2."""
    usage = subprocess.run(["bash", f"scripts/{script}", "--help"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert usage.returncode == 0 and "MAIN_STAGE2_STEPS" in usage.stdout and usage.stderr == ""
    wrong = subprocess.run(["bash", f"scripts/{script}", "--seed", "1"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert wrong.stderr.count("\n") == 1 and wrong.stderr.startswith(f"error: {script} takes no arguments")


def test_an_unknown_stage2_recipe_is_one_line_before_anything_runs(tmp_path):
    job = subprocess.run(["bash", "scripts/main.sh"], cwd=REPO_ROOT, capture_output=True, text=True,
                         env={**os.environ, "MAIN_STAGE2_RECIPE": "sgd", "RUN_DIR": str(tmp_path / "run")})
    assert job.returncode == 2 and job.stdout == "" and not (tmp_path / "run").exists()
    assert job.stderr == "error: MAIN_STAGE2_RECIPE=sgd is unknown; use muon (the default) or adamw\n"


def test_main_sh_trains_the_speedrun_recipe_it_names():
    """scripts/main.sh's default stages are the speedrun's main_job_muon_batch8, flag for flag."""
    from genie.studies.speedrun_recipes import MAIN_JOB, VARIANTS
    from genie.training.arguments import TrainingArguments

    recipes = subprocess.run(["bash", "-c", 'set -eu; source <(sed -n "/^STAGE1_BATCH=/,/^esac/p" scripts/main.sh); '
                              'echo "${STAGE1[*]}"; echo "${STAGE2[*]}"; echo "$STAGE2_STEPS"'],
                             cwd=REPO_ROOT, capture_output=True, text=True, check=True,
                             env={k: v for k, v in os.environ.items() if not k.startswith("MAIN_")}).stdout.splitlines()
    as_flags = lambda line: {k.removeprefix("--"): v for k, v in zip(line.split()[::2], line.split()[1::2])}
    variant = VARIANTS["main_job_muon_batch8"]
    expected_stage2 = {**MAIN_JOB, **variant.stage2, "muon_learning_rate": TrainingArguments.muon_learning_rate}
    assert {k: type(expected_stage2[k])(v) for k, v in as_flags(recipes[1]).items()} == {
        k: expected_stage2[k] for k in as_flags(recipes[1])}
    assert set(variant.stage2) <= set(as_flags(recipes[1])) and int(recipes[2]) == variant.steps
    assert {k: type(MAIN_JOB[k])(v) for k, v in as_flags(recipes[0]).items()} == {
        k: MAIN_JOB[k] for k in ("learning_rate", "per_device_train_batch_size")}
