"""The axial rotary position embedding of spatial attention (config field spatial_rope)."""
import json

import pytest
import torch

from genie.errors import ConfigError
from genie.model.config import GenieConfig
from genie.model.rotary import AxialRotary
from genie.model.stmaskgit import STMaskGIT
from tests.conftest import TINY


def test_a_query_key_product_depends_only_on_the_row_and_column_offset():
    rotary = AxialRotary(4, 4, 8)
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, generator=generator), torch.randn(8, generator=generator)
    rotated_q, rotated_k = rotary(q.expand(16, 8)), rotary(k.expand(16, 8))
    score = lambda a, b: float(rotated_q[a] @ rotated_k[b])  # noqa: E731  tokens a, b = row * 4 + column
    # (0, 0) -> (1, 2) and (2, 1) -> (3, 3): the same offset (+1, +2), the same score
    assert score(0, 6) == pytest.approx(score(9, 15), abs=1e-5)
    assert score(0, 6) != pytest.approx(score(0, 9), abs=1e-3)  # offset (+2, +1) differs
    # a rotation keeps each token's norm, and token (0, 0) is not rotated at all
    assert torch.allclose(rotated_q.norm(dim=-1), q.norm().expand(16))
    assert torch.equal(rotated_q[0], q)


def test_rows_turn_the_first_half_of_the_channels_and_columns_the_second():
    rotary = AxialRotary(2, 2, 8, base=100.0)
    x = torch.ones(4, 8)
    rotated = rotary(x)  # tokens (0,0), (0,1), (1,0), (1,1)
    row_pairs, column_pairs = [0, 1, 4, 5], [2, 3, 6, 7]  # pairs (i, i+4): i in 0,1 rows, 2,3 columns
    assert torch.equal(rotated[1][row_pairs], x[1][row_pairs])  # one column over: rows' channels unchanged
    assert torch.equal(rotated[2][column_pairs], x[2][column_pairs])  # one row down: columns' unchanged
    # the fastest row pair (frequency 1) turns by 1 radian per row: (1, 1) -> (cos 1 - sin 1, sin 1 + cos 1)
    one = torch.tensor(1.0)
    assert rotated[2, 0].item() == pytest.approx((one.cos() - one.sin()).item(), abs=1e-6)
    assert rotated[2, 4].item() == pytest.approx((one.sin() + one.cos()).item(), abs=1e-6)


def test_spatial_rope_changes_no_parameter_and_saves_where_the_reference_would_refuse(tmp_path):
    plain, rope = GenieConfig(**TINY), GenieConfig(**TINY, spatial_rope=True)
    torch.manual_seed(0)
    without = STMaskGIT(plain)
    torch.manual_seed(0)
    with_rope = STMaskGIT(rope)
    assert without.state_dict().keys() == with_rope.state_dict().keys()  # no saved buffer, same weights
    assert all(torch.equal(a, b) for a, b in zip(without.state_dict().values(), with_rope.state_dict().values()))
    ids, actions = torch.randint(0, 256, (2, 4, 16)), torch.randn(2, 4, 2)
    with torch.no_grad():
        assert not torch.allclose(without.compute_logits(ids, actions), with_rope.compute_logits(ids, actions))
    without.save_pretrained(tmp_path / "plain")
    with_rope.save_pretrained(tmp_path / "rope")
    assert "spatial_rope" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    assert json.loads((tmp_path / "rope" / "config.json").read_text())["spatial_rope"] is True
    loaded = STMaskGIT.from_pretrained(tmp_path / "rope").eval()
    with torch.no_grad():
        assert torch.equal(loaded.compute_logits(ids, actions), with_rope.eval().compute_logits(ids, actions))


def test_spatial_rope_needs_a_head_width_divisible_by_4():
    with pytest.raises(ConfigError, match="spatial_rope.*divisible by 4"):
        GenieConfig(**{**TINY, "num_heads": 32}, spatial_rope=True)  # head width 2
