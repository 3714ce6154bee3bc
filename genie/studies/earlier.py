"""Cells scored before: an earlier report of the same study (its runs.csv, and its curves.csv where it has
one) stands in for runs that a store no longer holds, e.g. a partial report committed in results/ when the
study goes on from another machine or a wiped scratch disk. Those cells are not trained again, and the
new report takes their scores from the earlier one.

A row is taken only where its run is the one this code makes for that arm and seed: a run's name hashes
what decides its result (the result code, the design, the device kind and the torch version; not the CPU
model), so scores of other code or of another design are refused, not mixed in."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from genie.errors import ConfigError

RUNS_CSV, CURVES_CSV = "runs.csv", "curves.csv"
NOT_SCORES = ("arm", "seed", "run")
# The scores of a run, in runs.csv's order (genie.studies.report.Cell.metrics writes them).
SCORES = ("cross_entropy", "accuracy", "rollout_accuracy_h1", "rollout_accuracy", "copy_previous_accuracy",
          "copy_rollout_accuracy_h1", "unigram_cross_entropy", "num_windows", "num_tokens", "changed_cross_entropy",
          "changed_accuracy", "action_sensitivity", "unigram_accuracy", "changed_unigram_cross_entropy",
          "changed_unigram_accuracy", "changed_fraction")
INTEGER_SCORES = ("num_windows", "num_tokens")
CURVE_COLUMNS = ("arm", "seed", "step", "val_cross_entropy")


@dataclass(frozen=True)
class EarlierCell:
    """One arm at one seed as an earlier report scored it: its run's name, scores and val curve."""
    run: str
    scores: dict[str, float]
    curve: tuple[tuple[int, float], ...] = ()


def read_earlier_report(folder: Path, runs: dict[tuple[str, int], str]) -> dict[tuple[str, int], EarlierCell]:
    """The cells of the report in `folder`, keyed by (arm name, seed). `runs`: the run name this code and
    study make for each (arm name, seed); a row of another cell or another run is a ConfigError."""
    path = folder / RUNS_CSV
    if not path.is_file():
        raise ConfigError(f"--earlier_report {folder}: no {RUNS_CSV} there; name the folder of an earlier report of "
                          "this study (e.g. results/<study name>)")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in NOT_SCORES + SCORES if c not in (reader.fieldnames or ())]
        if missing:
            raise ConfigError(f"{path} lacks the columns {missing}: it is no {RUNS_CSV} of a study report this code "
                              "writes; name the folder of an earlier report of this study")
        rows = list(reader)
    cells: dict[tuple[str, int], EarlierCell] = {}
    for row in rows:
        cell = (row["arm"], int(row["seed"]))
        if cell not in runs:
            raise ConfigError(f"{path}: arm {cell[0]!r} at seed {cell[1]} is no cell of this study (its arms and "
                              "seeds, after --seeds); name an earlier report of the same study file, with its seeds")
        if cell in cells:
            raise ConfigError(f"{path}: arm {cell[0]!r} at seed {cell[1]} has two rows; a report has one per cell")
        if row["run"] != runs[cell]:
            raise ConfigError(f"{path}: arm {cell[0]!r} at seed {cell[1]} was run {row['run']}, but this code and "
                              f"study file make it {runs[cell]}: other code, another design, device kind or torch "
                              "trained it; continue from a worktree of the code that did, on the same kind of device")
        scores = {k: int(row[k]) if k in INTEGER_SCORES else float(row[k] or "nan") for k in SCORES}
        cells[cell] = EarlierCell(row["run"], scores)
    return _with_curves(folder / CURVES_CSV, cells)


def _with_curves(path: Path, cells: dict[tuple[str, int], EarlierCell]) -> dict[tuple[str, int], EarlierCell]:
    """The cells with their val curves from curves.csv (a report written before it existed has none)."""
    if not path.is_file():
        return cells
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not set(CURVE_COLUMNS) <= set(reader.fieldnames or ()):
            raise ConfigError(f"{path} lacks the columns {list(CURVE_COLUMNS)}; remove it to continue without the "
                              "earlier curves")
        points: dict[tuple[str, int], list[tuple[int, float]]] = {}
        for row in reader:
            points.setdefault((row["arm"], int(row["seed"])), []).append((int(row["step"]),
                                                                          float(row["val_cross_entropy"])))
    return {key: EarlierCell(cell.run, cell.scores, tuple(points.get(key, ()))) for key, cell in cells.items()}
