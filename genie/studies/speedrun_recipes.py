"""The speedrun's catalogue: the tracks (a world, its model config and its targets) and the variants
(training recipes) that `scripts/speedrun.py --world ... --variants ...` names. The machinery that trains,
scores and times them is genie/studies/speedrun.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The main job's recipe (scripts/main.sh): the baseline every variant is timed against.
MAIN_JOB = {"learning_rate": 3e-3, "lr_scheduler_type": "cosine", "num_warmup_steps": 20,
            "per_device_train_batch_size": 16}


@dataclass(frozen=True)
class Track:
    """A speedrun track, named by --world: a model config, the data (a folder with train/ and val/, or
    None: a built-in world) and the targets. (Not the built-in world's variants, genie.data.builtin.WORLDS.)"""
    genie_config: str
    data_dir: str | None = None
    # (metric, "<=" or ">=", a value or the name of the reference scored beside it) on the val subset
    targets: tuple[tuple[str, str, float | str], ...] = ()
    stride: int | None = None  # val window spacing (None: the data's own, 2 Hz)
    builtin_world: str | None = None  # the built-in world's variant (--builtin_world) when data_dir is None
    recorded: bool = False  # trains on recorded data: --data_dir is required


TRACKS = {
    # The main job's level over 3 seeds: changed-token accuracy 0.652, changed-token CE 2.53.
    # Below the unigram on changed tokens: where the dynamics start to be learned.
    "builtin": Track("configs/small.json", targets=(("changed_cross_entropy", "<=", "changed_unigram_cross_entropy"),
                                                     ("changed_accuracy", ">=", 0.65),
                                                     ("changed_cross_entropy", "<=", 2.55))),
    # Breakout recorded by `scripts/record_atari.py --seed 0` (scripts/atari.sh's data): --data_dir names it.
    # The built-in world whose steered sprites move by the action alone (--builtin_world steered): the same
    # first target; the main job's level was measured on "swing" only, so it is not a target here.
    "steered": Track("configs/small.json", targets=(("changed_cross_entropy", "<=", "changed_unigram_cross_entropy"),),
                     builtin_world="steered"),
    "breakout": Track("configs/atari.json", targets=(("changed_cross_entropy", "<=", "changed_unigram_cross_entropy"),
                                                     ("changed_accuracy", ">=", 0.60)), stride=1, recorded=True),
}


@dataclass(frozen=True)
class Variant:
    """A training recipe: stage-2 flags over the main job's, an optional stage 1 before it."""
    description: str
    stage2: dict[str, Any] = field(default_factory=dict)
    steps: int = 800
    stage1_steps: int = 0
    stage1: dict[str, Any] = field(default_factory=dict)  # masked_pretrain.py flags
    genie_config: str | None = None  # a model config instead of the world's (e.g. with spatial_rope)


HALF_ON_4_FRAMES = {"curriculum_frames": "4", "curriculum_fractions": "0.5"}
MAIN_JOB_STAGE1 = {"initial_mask_ratio": 0.8, "final_mask_ratio": 0.1}  # scripts/main.sh's stage 1 (cosine)
# Variant fields for "the main job's stage 1 first": 200 steps with its masking.
AFTER_MAIN_JOB_STAGE1 = {"stage1_steps": 200, "stage1": MAIN_JOB_STAGE1}
# Breakout's changed tokens are 2.6% of all (the built-in world's ~10%): at weight 10 they carry about a
# fifth of the loss.
CHANGED_WEIGHT_10 = {"changed_token_loss_weight": 10.0}

VARIANTS = {
    "main_job": Variant("the main job: 200 steps of stage 1 (cosine 0.8 -> 0.1), then 800 of stage 2",
                        **AFTER_MAIN_JOB_STAGE1),
    "stage2_only": Variant("stage 2 alone, 800 steps, the main job's optimizer settings"),
    "muon": Variant("stage 2 alone with Muon on the block matrices (AdamW at 3e-3 for the rest)",
                    stage2={"optimizer": "muon"}),
    "batch8": Variant("stage 2 alone at batch 8 (half the windows per step), 1600 steps",
                      stage2={"per_device_train_batch_size": 8}, steps=1600),
    "lr1e-2": Variant("stage 2 alone at learning rate 1e-2", stage2={"learning_rate": 1e-2}),
    "weight10": Variant("stage 2 alone, changed tokens weighted 10x in the loss", stage2=CHANGED_WEIGHT_10),
    # Muon in the main job's stage 2: a candidate default of scripts/main.sh.
    "main_job_muon": Variant("the main job, with Muon on stage 2's block matrices",
                             stage2={"optimizer": "muon"}, **AFTER_MAIN_JOB_STAGE1),
    "main_job_weight10": Variant("the main job, with stage 2's changed tokens weighted 10x in the loss",
                                 stage2=CHANGED_WEIGHT_10, **AFTER_MAIN_JOB_STAGE1),
    # A quarter of the main job's budget: the schedule ends where the target has to be reached.
    "short": Variant("stage 2 alone, 300 steps (cosine over 300)", steps=300),
    "short_muon": Variant("short, with Muon", stage2={"optimizer": "muon"}, steps=300),
    # The budget: a quarter of the main job's training seconds is about 230 Muon steps on this CPU.
    "quarter_muon": Variant("stage 2 alone with Muon, 200 steps (cosine over 200)", stage2={"optimizer": "muon"},
                            steps=200),
    # Rotary position embedding in spatial attention: a neighbour is one direction from the first step.
    "short_rope": Variant("short, spatial rotary position embedding (configs/small_rope.json)", steps=300,
                          genie_config="configs/small_rope.json"),
    "short_muon_rope": Variant("short, Muon and spatial rotary position embedding", stage2={"optimizer": "muon"},
                               steps=300, genie_config="configs/small_rope.json"),
    "short_weight3": Variant("short, changed tokens weighted 3x in the loss",
                             stage2={"changed_token_loss_weight": 3.0}, steps=300),
    "short_focus": Variant("short, stage-2 masks favour changed tokens (focus 0.5)",
                           stage2={"dynamics_mask_focus": 0.5}, steps=300),
    "short_muon_weight3": Variant("short, Muon and changed tokens weighted 3x",
                                  stage2={"optimizer": "muon", "changed_token_loss_weight": 3.0}, steps=300),
    # Window-length curriculum: the first half of the steps on the first 4 of the 8 frames (about half the cost).
    "short_curriculum": Variant("short, the first 150 steps on 4-frame windows",
                                stage2=HALF_ON_4_FRAMES, steps=300),
    "short_muon_curriculum": Variant("short, Muon, the first 150 steps on 4-frame windows",
                                     stage2={"optimizer": "muon", **HALF_ON_4_FRAMES}, steps=300),
    # 4 frames leave the frames the evaluation scores (from num_prompt_frames = 4 on) untrained until step 150:
    # 6 frames train positions 4 and 5 from the start, for a smaller saving (about 3/4 of a step's cost).
    "short_muon_curriculum6": Variant("short, Muon, the first 150 steps on 6-frame windows",
                                      stage2={"optimizer": "muon", "curriculum_frames": "6",
                                              "curriculum_fractions": "0.5"}, steps=300),
    # About short_muon's training seconds if a 4-frame step costs half: 200 x 1/2 + 200 = 300 step-equivalents.
    "muon_curriculum_400": Variant("Muon, 400 steps, the first 200 on 4-frame windows",
                                   stage2={"optimizer": "muon", **HALF_ON_4_FRAMES}, steps=400),
}

# One factor at a time around short_muon (Muon 0.02, AdamW 3e-3, 20 warm-up steps, cosine, batch 16, 300
# steps), each point on the same seeds: learning rates, warm-up, schedule, and batch size at the same
# 4,800 training windows.
SHORT_MUON_SWEEP = {
    "lr0.005": ("Muon's learning rate 0.005", {"muon_learning_rate": 0.005}, 300),
    "lr0.01": ("Muon's learning rate 0.01", {"muon_learning_rate": 0.01}, 300),
    "lr0.04": ("Muon's learning rate 0.04", {"muon_learning_rate": 0.04}, 300),
    "adamw1e-3": ("AdamW's learning rate (the non-matrix parameters) 1e-3", {"learning_rate": 1e-3}, 300),
    "adamw1e-2": ("AdamW's learning rate (the non-matrix parameters) 1e-2", {"learning_rate": 1e-2}, 300),
    "warmup0": ("no warm-up", {"num_warmup_steps": 0}, 300),
    "warmup60": ("60 warm-up steps", {"num_warmup_steps": 60}, 300),
    "linear": ("a linear decay instead of the cosine", {"lr_scheduler_type": "linear"}, 300),
    "batch8": ("batch 8 for 600 steps", {"per_device_train_batch_size": 8}, 600),
    "batch32": ("batch 32 for 150 steps", {"per_device_train_batch_size": 32}, 150),
}
VARIANTS.update({f"short_muon_{name}": Variant(f"short_muon with {what}", stage2={"optimizer": "muon", **flags},
                                               steps=steps)
                 for name, (what, flags, steps) in SHORT_MUON_SWEEP.items()})
# The two points whose means beat short_muon's on all three scores, together: scripts/main.sh's stage 2
# since 2026-12-07 (MAIN_STAGE2_RECIPE=muon).
MUON_BATCH8 = {"optimizer": "muon", "per_device_train_batch_size": 8, "learning_rate": 1e-2}
VARIANTS["short_muon_batch8_adamw1e-2"] = Variant(
    "short_muon with batch 8 for 600 steps and AdamW's learning rate 1e-2", stage2=MUON_BATCH8, steps=600)
# That recipe for the main job's 12,800 training windows (stage 2 alone): on Breakout (--steps 2000) 4,000
# steps, the Atari job's 32,000 windows.
VARIANTS["muon_batch8"] = Variant(
    "stage 2 alone as short_muon_batch8_adamw1e-2, for 1600 steps (the main job's training windows)",
    stage2=MUON_BATCH8, steps=1600)
# The main job's stage 1, then that stage-2 recipe: scripts/main.sh's default.
VARIANTS["main_job_muon_batch8"] = Variant(
    "the main job's stage 1 (200 steps), then stage 2 as short_muon_batch8_adamw1e-2 (600 steps at batch 8)",
    stage2=MUON_BATCH8, steps=600, **AFTER_MAIN_JOB_STAGE1)
# Both stages at the main job's training windows: its stage 1, then muon_batch8 (Breakout: 500 + 4,000 steps,
# scripts/atari.sh's default).
VARIANTS["main_job_muon_batch8_windows"] = Variant(
    "the main job's stage 1 (200 steps), then muon_batch8 (1600 steps at batch 8: the main job's stage-2 windows)",
    stage2=MUON_BATCH8, steps=1600, **AFTER_MAIN_JOB_STAGE1)
