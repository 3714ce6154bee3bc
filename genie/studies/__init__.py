"""Ablation studies of stage 1: a study file names a grid of stage-1 settings, budgets and seeds; the
runner trains every arm (stage 1 then stage 2) beside stage 2 alone and reports paired differences."""
from genie.studies.report import write_report
from genie.studies.runner import RunnerOptions, emit_commands, run_study
from genie.studies.spec import Arm, StudySpec, load_study
from genie.studies.stats import PairedDifference, mean_std, paired_difference

__all__ = ["Arm", "PairedDifference", "RunnerOptions", "StudySpec", "emit_commands", "load_study", "mean_std",
           "paired_difference", "run_study", "write_report"]
