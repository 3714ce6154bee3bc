"""The evaluation report (genie/evaluation/loop.py computes it): eval.json, the markdown tables of eval.md,
eval.png and the one-line headline."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from genie.errors import ConfigError
from genie.files import atomic_file, one_line_write_failures

EVAL_OUTPUTS = ("eval.json", "eval.md", "eval.png")


def check_eval_output_dir(output_dir: str | Path | None) -> None:
    """An evaluation replaces its own earlier outputs (eval.json says they are), never a user's eval.md
    or eval.png."""
    if output_dir is None or (Path(output_dir) / "eval.json").is_file():
        return
    foreign = [name for name in EVAL_OUTPUTS[1:] if (Path(output_dir) / name).exists()]
    if foreign:
        raise ConfigError(f"--output_dir {output_dir} holds {' and '.join(foreign)} that no evaluation wrote (no "
                          "eval.json beside them); move them or choose another --output_dir")


def write_eval_outputs(report: dict[str, Any], output_dir: str | Path) -> Path:
    """eval.json (every number), eval.md (the table) and eval.png (metrics per frame and horizon) in
    `output_dir`. All three are written aside and renamed into place together, eval.json last, so its
    presence means the evaluation finished; a failed write (a full disk, a quota, ...) is one line and
    leaves the folder as it was."""
    from genie.evaluation.pictures import plot_eval_report  # matplotlib only where a picture is drawn

    out = Path(output_dir)
    with one_line_write_failures(out / "eval.json", "nothing was replaced or left half-written there",
                                 "run the evaluation again", partial=[] if out.exists() else [out]):
        out.mkdir(parents=True, exist_ok=True)
        # Renamed in the reverse order: eval.png, eval.md, then eval.json; none if any write fails.
        with atomic_file(out / "eval.json") as json_file, atomic_file(out / "eval.md") as md_file, \
                atomic_file(out / "eval.png") as png_file:
            md_file.write_text(format_report(report) + "\n")
            plot_eval_report(report, png_file)
            json_file.write_text(json.dumps(json_safe(report), indent=2) + "\n")
    return out / "eval.json"


def json_safe(value: Any) -> Any:
    """Non-finite floats -> strings ("inf"), so that the report is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def format_report(report: dict[str, Any]) -> str:
    """Markdown: the teacher-forced metric beside its references on all, changed and static tokens,
    action sensitivity, the rollout per horizon, and the headline."""
    sampling = report.get("sampling", {})
    lines = [f"Teacher-forced evaluation (the 1X challenge metric) on {report['num_windows']} val windows, frames "
             f"{report.get('first_frame', 1)}..{report.get('first_frame', 1) + report['frames_scored'] - 1} "
             f"({report['num_tokens']} tokens); MaskGIT {sampling.get('maskgit_steps')} steps, temperature "
             f"{sampling.get('temperature')}, {sampling.get('unmask_mode')} unmasking, seed {report.get('seed')}", "",
             *_teacher_forced_table(report)]
    if report.get("action_sensitivity") is not None:
        lines += ["", _action_sensitivity_line(report)]
    elif report.get("action_sensitivity_windows") == 0:
        lines += ["", "Action sensitivity: not measured (no batch had actions to shuffle: withheld, or one "
                      "window per batch)."]
    if "seconds_per_frame" in report:
        what = "first pass only (--loss_only)" if report.get("loss_only") else "teacher-forced MaskGIT decoding"
        lines += ["", f"Time: {report['seconds_per_frame']:.4g} s/frame ({what}, {report.get('device', 'cpu')})."]
    if "rollout" in report:
        lines += ["", *_rollout_table(report["rollout"], report)]
    return "\n".join(lines + ["", f"**Result:** {headline(report)}"])


def _teacher_forced_table(report: dict[str, Any]) -> list[str]:
    """Rows: model and references; columns: CE and accuracy on all tokens, then on changed tokens
    (those that differ from the previous frame) and on static ones."""
    split = "changed_fraction" in report
    header = "| predictor | CE all | accuracy all | argmax accuracy all |"
    if split:
        header += " CE changed | accuracy changed | CE static | accuracy static |"
    rows = [("model", "cross_entropy", "accuracy", "argmax_accuracy"),
            ("unigram of train tokens (CE) / most frequent token (accuracy)", "unigram_cross_entropy",
             "unigram_accuracy", None),
            ("copy previous frame", None, "copy_previous_accuracy", None)]
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name, ce, acc, argmax in rows:
        cells = [_fmt(report.get(ce)) if ce else "-", _fmt(report.get(acc)), _fmt(report.get(argmax)) if argmax else "-"]
        if split:
            for part in ("changed", "static"):
                cells += [_fmt(report.get(f"{part}_{ce}")) if ce else "-", _fmt(report.get(f"{part}_{acc}"))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if split:
        lines += ["", f"Changed tokens: {report['changed_fraction']:.2%} of the scored tokens differ from the previous "
                  "frame's. Copying the previous frame scores 0 on them and 1 on the static ones by definition; only "
                  "the changed tokens show whether the dynamics were learned. CE in nats/token (sum over factors); "
                  "accuracy of the final MaskGIT samples."]
    return lines


def _action_sensitivity_line(report: dict[str, Any]) -> str:
    line = (f"Action sensitivity (CE with the actions of another window minus CE with the true ones, on "
            f"{report['action_sensitivity_windows']} windows; 0 for a model that ignores its actions): "
            f"{report['action_sensitivity']:+.4f} nats/token on all tokens")
    if report.get("changed_action_sensitivity") is not None:
        line += f", {report['changed_action_sensitivity']:+.4f} on changed tokens"
    if report.get("new_action_changed_action_sensitivity") is not None:
        line += (f", {report['new_action_changed_action_sensitivity']:+.4f} on the "
                 f"{report['new_action_changed_tokens']:,} changed tokens of frames whose action differs from the "
                 f"previous frame's (where only the action tells the change; their CE with the true actions "
                 f"{report['new_action_changed_cross_entropy']:.4f})")
    per_frame = report.get("changed_action_sensitivity_per_frame")
    if per_frame:
        first = report.get("first_frame", 1)
        line += (f". On changed tokens, per frame {first}..{first + len(per_frame) - 1}: "
                 + ", ".join("-" if v is None else f"{v:+.3f}" for v in per_frame))
    return line + "."


def headline(report: dict[str, Any]) -> str:
    """One line: the model against the strongest reference on each metric, on all tokens and on the
    tokens that change, and a plain statement when it does not beat them."""
    refs_acc = {"copy previous frame": report.get("copy_previous_accuracy"),
                "most frequent token": report.get("unigram_accuracy")}
    parts, failures = [], []
    parts.append(_versus("CE", report["cross_entropy"], {"unigram": report.get("unigram_cross_entropy")}, lower=True,
                         failures=failures))
    # Without MaskGIT sampling (a loss-only evaluation) the first pass's argmax accuracy stands in, named so.
    accuracy = "accuracy" if report.get("accuracy") is not None else "argmax_accuracy"
    label = "accuracy" if accuracy == "accuracy" else "first-pass accuracy"
    if report.get(accuracy) is not None:
        parts.append(_versus(label, report[accuracy], refs_acc, lower=False, failures=failures))
    margins, unclear = report.get("changed_margins") or {}, []
    if report.get("changed_cross_entropy") is not None:
        changed = [_versus("CE", report["changed_cross_entropy"], {"unigram": report.get("changed_unigram_cross_entropy")},
                           lower=True, failures=failures, where="changed tokens")
                   + _margin(margins.get("cross_entropy_vs_unigram"), "the unigram on CE", unclear)]
        if report.get(f"changed_{accuracy}") is not None:
            changed.append(_versus(label, report[f"changed_{accuracy}"],
                                   {"most frequent token": report.get("changed_unigram_accuracy")}, lower=False,
                                   failures=failures, where="changed tokens")
                           + _margin(margins.get(f"{accuracy}_vs_most_frequent"),
                                     f"the most frequent token on {label}", unclear))
        parts.append(f"on the {report['changed_fraction']:.1%} changed tokens " + ", ".join(changed)
                     + " (copy scores 0 there)")
    line = "model " + "; ".join(parts) + "."
    if failures:
        line += (" The model does NOT beat " + "; ".join(failures) + ": it has not learned the dynamics"
                 + (" there." if all("changed" in f for f in failures) else "."))
    elif unclear:
        line += (" The model is ahead of every reference, but not distinguishable from " + "; ".join(unclear)
                 + " on the changed tokens: the 95% interval over windows includes 0.")
    else:
        line += " The model beats every reference."
    return line


def _margin(margin: dict[str, Any] | None, reference: str, unclear: list[str]) -> str:
    """The margin over a reference on the changed tokens with its interval and what it rests on; a
    margin whose interval includes 0 is noted in `unclear`."""
    if not margin:
        return ""
    if margin["low"] <= 0 <= margin["high"]:
        unclear.append(reference)
    return (f" (margin {margin['margin']:+.4f} [{margin['low']:+.4f}, {margin['high']:+.4f}] over "
            f"{margin['windows']} windows, {margin['changed_tokens']:,} changed tokens)")


def _versus(metric: str, value: float, references: dict[str, float | None], lower: bool, failures: list[str],
            where: str = "all tokens") -> str:
    known = {name: v for name, v in references.items() if v is not None}
    if not known:
        return f"{metric} {value:.4f}"
    best = min(known, key=known.get) if lower else max(known, key=known.get)
    for name, reference in known.items():  # each reference not beaten is named, not only the best one
        if (value >= reference) if lower else (value <= reference):
            failures.append(f"the {name} on {metric} ({where})")
    return f"{metric} {value:.4f} vs {best} {known[best]:.4f}"


def _rollout_table(rollout: dict[str, Any], report: dict[str, Any]) -> list[str]:
    horizons = rollout["horizons"]
    k = report.get("first_frame", 1) + report["frames_scored"] - len(horizons)
    lines = [f"Rollout: {k} true prompt frames, then {len(horizons)} generated frames (each the context of the "
             "next); per horizon h (frame k-1+h). Changed tokens: those that differ from the last prompt frame.", "",
             "| | " + " | ".join(f"h={h}" for h in horizons) + " | mean |",
             "|---|" + "---|" * (len(horizons) + 1)]
    rows = [("token accuracy: model", "accuracy"), ("token accuracy: copy last prompt frame", "copy_accuracy"),
            ("token accuracy: most frequent token", "most_frequent_accuracy"),
            ("changed tokens: fraction", "changed_fraction"), ("changed tokens: model accuracy", "changed_accuracy"),
            ("changed tokens: most frequent token", "changed_most_frequent_accuracy"),
            ("PSNR dB: model", "psnr"), ("PSNR dB: copy last prompt frame", "copy_psnr")]
    for name, key in rows:
        if f"{key}_per_horizon" in rollout:
            values = rollout[f"{key}_per_horizon"]
            lines.append(f"| {name} | " + " | ".join(_fmt(v, 3) for v in values) + f" | {_fmt(rollout.get(key), 3)} |")
    return lines


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)
