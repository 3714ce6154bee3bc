"""A cheap (loss-only) evaluation of stage 1 scores each window's last frame, and scores it exactly as
the full metric does: a bidirectional model pays a whole-window pass for every frame it scores."""
import torch

from genie.evaluation.loop import evaluate_batches
from genie.evaluation.scores import EvalOptions
from genie.model.config import GenieConfig
from genie.model.stmaskgit import STMaskGIT
from genie.training.masked_pretrain_config import MaskedPretrainConfig
from genie.training.objectives import AutoregressiveObjective, MaskedPretrainObjective
from tests.conftest import TINY


def windows(config: GenieConfig, count: int = 6) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 8, (count, config.T, config.S), generator=generator)  # few ids: some repeat
    actions = torch.randn(count, config.T, config.action_dim, generator=generator)
    return [{"input_ids": tokens[i:i + 3], "actions": actions[i:i + 3]} for i in range(0, count, 3)]


def model_for(objective, config: GenieConfig) -> STMaskGIT:
    torch.manual_seed(0)
    model = STMaskGIT(config)
    model.set_temporal_attention(objective.temporal_attention)
    return model.eval()


def test_stage1_cheap_evaluation_scores_the_last_frame_as_the_full_metric_does():
    config = GenieConfig(**TINY)
    objective = MaskedPretrainObjective(config, MaskedPretrainConfig())
    model = model_for(objective, config)
    batches = windows(config)
    with torch.no_grad():
        # block_masked: what v2.0 data asks for (a second whole-window pass, left out of a cheap evaluation)
        objective.evaluate(model, batches, lambda x: x, EvalOptions(loss_only=True, action_sensitivity=False,
                                                                    block_masked=True))
        cheap = objective.last_report
        full = evaluate_batches(model, batches, EvalOptions(loss_only=True, action_sensitivity=False))
    assert objective.cheap_scope() == objective.last_scope == "each window's last frame"
    assert not any(key.startswith("block_") for key in cheap)
    assert (cheap["first_frame"], cheap["frames_scored"], full["frames_scored"]) == (config.T - 1, 1, config.T - 1)
    assert cheap["cross_entropy"] == full["cross_entropy_per_frame"][-1]
    assert cheap["num_tokens"] == 6 * config.S


def test_a_causal_objective_scores_every_frame_in_a_cheap_evaluation():
    config = GenieConfig(**TINY)
    stage1_causal = MaskedPretrainObjective(config, MaskedPretrainConfig(temporal_attention="causal"))
    for objective in (stage1_causal, AutoregressiveObjective(config)):
        model = model_for(objective, config)
        with torch.no_grad():
            objective.evaluate(model, windows(config), lambda x: x, EvalOptions(loss_only=True, action_sensitivity=False))
        assert objective.cheap_scope() == objective.last_scope == "every frame"
        assert objective.last_report["frames_scored"] == config.T - 1
