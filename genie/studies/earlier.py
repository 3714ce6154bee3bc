"""Cells scored before: an earlier report of the same study (its runs.csv, and its curves.csv where it has
one) stands in for runs that a store no longer holds, e.g. a partial report committed in results/ when the
study goes on from another machine or a wiped scratch disk. Those cells are not trained again, and the
new report takes their scores from the earlier one.

A row is taken only where its run is the one this code makes for that arm and seed: a run's name hashes
everything that decides its result, the result code included, so scores of other code or of another design
are refused, not mixed in."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from genie.errors import ConfigError

RUNS_CSV, CURVES_CSV = "runs.csv", "curves.csv"
INTEGER_SCORES = ("num_windows", "num_tokens")
NOT_SCORES = ("arm", "seed", "run")


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
    cells = {}
    reader = csv.DictReader(path.open(newline=""))
    if not set(NOT_SCORES) <= set(reader.fieldnames or ()):
        raise ConfigError(f"{path} has no {'/'.join(NOT_SCORES)} columns: it is no study report's {RUNS_CSV}; name the "
                          "folder of an earlier report of this study")
    for row in reader:
        cell = (row["arm"], int(row["seed"]))
        if cell not in runs:
            raise ConfigError(f"{path}: arm {cell[0]!r} at seed {cell[1]} is no cell of this study (its arms and "
                              "seeds); name an earlier report of the same study file")
        if row["run"] != runs[cell]:
            raise ConfigError(f"{path}: arm {cell[0]!r} at seed {cell[1]} was run {row['run']}, but this code and "
                              f"study file make it {runs[cell]}: other code or another design trained it; continue "
                              "from a worktree of the code that did (a run's name hashes its result code)")
        scores = {k: int(v) if k in INTEGER_SCORES else float(v) for k, v in row.items() if k not in NOT_SCORES}
        cells[cell] = EarlierCell(row["run"], scores)
    return _with_curves(folder / CURVES_CSV, cells)


def _with_curves(path: Path, cells: dict[tuple[str, int], EarlierCell]) -> dict[tuple[str, int], EarlierCell]:
    """The cells with their val curves from curves.csv (a report written before it existed has none)."""
    if not path.is_file():
        return cells
    points: dict[tuple[str, int], list[tuple[int, float]]] = {}
    for row in csv.DictReader(path.open(newline="")):
        points.setdefault((row["arm"], int(row["seed"])), []).append((int(row["step"]), float(row["val_cross_entropy"])))
    return {key: EarlierCell(cell.run, cell.scores, tuple(points.get(key, ()))) for key, cell in cells.items()}
