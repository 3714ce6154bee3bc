"""The optimizers: which tensors Muon steps and which AdamW does, one scheduler over both, exact state."""
import torch
from transformers import get_scheduler

from genie.model.stmaskgit import STMaskGIT
from genie.training.arguments import TrainingArguments
from genie.training.optimizer import MuonWithAdamW, build_optimizer


def muon_args(**extra) -> TrainingArguments:
    return TrainingArguments(optimizer="muon", learning_rate=1e-3, muon_learning_rate=0.02, **extra)


def test_muon_steps_the_block_matrices_and_adamw_the_rest(tiny_config):
    model = STMaskGIT(tiny_config)
    optimizer = build_optimizer(model, muon_args())
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for group in optimizer.muon.param_groups for p in group["params"]}
    adamw = {names[id(p)] for group in optimizer.adamw.param_groups for p in group["params"]}
    assert muon == {f"decoder.layers.{i}.{m}.weight" for i in range(tiny_config.num_layers)
                    for m in ("spatial_attn.qkv", "spatial_attn.proj", "temporal_attn.qkv", "temporal_attn.proj",
                              "mlp.fc1", "mlp.fc2")}
    assert muon | adamw == set(names.values()) and not muon & adamw
    assert {"out_x_proj.weight", "token_embed.factored_embeds.0.weight", "action_proj.weight",
            "pos_embed_TSC"} <= adamw
    assert [g["lr"] for g in optimizer.param_groups] == [0.02, 1e-3, 1e-3]


def test_adamw_is_the_default_with_decay_on_matrices_only(tiny_config):
    model = STMaskGIT(tiny_config)
    optimizer = build_optimizer(model, TrainingArguments(weight_decay=0.1))
    assert type(optimizer) is torch.optim.AdamW
    decayed = {id(p) for p in optimizer.param_groups[0]["params"]}
    for name, param in model.named_parameters():
        assert (id(param) in decayed) == (param.ndim == 2 and "embed" not in name), name


def test_one_scheduler_scales_both_learning_rates_from_their_own_peaks(tiny_config):
    optimizer = build_optimizer(STMaskGIT(tiny_config), muon_args())
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=2, num_training_steps=10)
    optimizer.step()
    scheduler.step()  # warm-up step 1 of 2: half of each peak
    assert optimizer.muon.param_groups[0]["lr"] == 0.01
    assert [g["lr"] for g in optimizer.adamw.param_groups] == [5e-4, 5e-4]


def test_the_scheduler_still_reaches_both_optimizers_after_a_state_load(tiny_config):
    """Accelerate's prepare (and a resume) load the optimizer's state before the scheduler is made: the
    learning rates it sets must be the ones Muon and AdamW step with (they once stayed at their peaks)."""
    from accelerate import Accelerator

    model = STMaskGIT(tiny_config)
    model, optimizer = Accelerator(cpu=True).prepare(model, build_optimizer(model, muon_args()))
    inner = optimizer.optimizer
    inner.load_state_dict(inner.state_dict())  # as a resume does, after prepare's own load
    scheduler = get_scheduler("linear", optimizer, num_warmup_steps=4, num_training_steps=10)
    optimizer.step()
    scheduler.step()  # warm-up step 1 of 4: a quarter of each peak
    assert inner.muon.param_groups[0]["lr"] == 0.005
    assert [g["lr"] for g in inner.adamw.param_groups] == [2.5e-4, 2.5e-4]
    assert all(a is b for a, b in zip(optimizer.param_groups, [*inner.muon.param_groups, *inner.adamw.param_groups]))


def training_losses(model, optimizer, steps: int, tokens, state=None) -> list[float]:
    """`steps` optimizer steps on one batch of clean windows (every token scored), from `state` if given."""
    if state is not None:
        optimizer.load_state_dict(state)
    losses = []
    for _ in range(steps):
        out = model(input_ids=tokens, labels=tokens, loss_mask=torch.ones_like(tokens, dtype=torch.bool),
                    actions=torch.zeros(*tokens.shape[:2], 2))
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
    return losses


def test_muon_lowers_the_loss_and_its_state_resumes_exactly(tiny_config):
    torch.manual_seed(0)
    tokens = torch.randint(0, tiny_config.image_vocab_size, (2, tiny_config.T, tiny_config.S))
    model = STMaskGIT(tiny_config)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(model, muon_args())
    assert isinstance(optimizer, MuonWithAdamW)
    losses = training_losses(model, optimizer, 6, tokens)
    assert losses[-1] < losses[0] - 0.15 and losses == sorted(losses, reverse=True), losses
    # 3 steps, save, 3 more from the saved state = 6 steps straight through
    model.load_state_dict(start)
    optimizer = build_optimizer(model, muon_args())
    first = training_losses(model, optimizer, 3, tokens)
    saved = optimizer.state_dict()
    rest = training_losses(model, build_optimizer(model, muon_args()), 3, tokens, state=saved)
    assert first + rest == losses


def test_changed_token_loss_weight_is_a_weighted_mean_over_scored_tokens(tiny_config):
    from genie.model.stmaskgit import masked_token_loss, token_cross_entropy
    from genie.training.objectives import AutoregressiveObjective

    torch.manual_seed(0)
    tokens = torch.randint(0, tiny_config.image_vocab_size, (2, tiny_config.T, tiny_config.S))
    tokens[:, 2] = tokens[:, 1]  # frame 2 static
    objective = AutoregressiveObjective(tiny_config, changed_token_loss_weight=3.0)
    inputs = objective.weigh_changed_tokens({"labels": tokens, "loss_mask": torch.ones_like(tokens, dtype=torch.bool)})
    changed = torch.zeros_like(tokens, dtype=torch.bool)
    changed[:, 1:] = tokens[:, 1:] != tokens[:, :-1]
    assert torch.equal(inputs["loss_weights"], 1 + 2 * changed.float())
    logits = torch.randn(*tokens.shape, tiny_config.num_factored_vocabs, tiny_config.factored_vocab_size)
    token_ce, _ = token_cross_entropy(logits, tokens, tiny_config)
    weights = 1 + 2 * changed.double()
    expected = (token_ce.double() * weights).sum() / weights.sum()
    loss, _, _ = masked_token_loss(logits, tokens, inputs["loss_mask"], tiny_config, token_weights=inputs["loss_weights"])
    assert abs(loss.item() - expected.item()) < 1e-5
    assert "loss_weights" not in AutoregressiveObjective(tiny_config).weigh_changed_tokens({"labels": tokens})
    assert objective.settings() == {"changed_token_loss_weight": 3.0} and AutoregressiveObjective(tiny_config).settings() == {}
