"""The TTT layers' fused input projection and kept tables: checkpoints with the separate
weights load into it (same outputs), the RoPE table and the learning-rate scale follow the
module's dtype exactly, and the layer's RoPE continues across calls as the absolute position."""

import pytest
import torch

from ttt_video.layers.rope import apply_rope, rope_cos_sin
from ttt_video.layers.ttt import projection_rows, split_projections
from ttt_video.models import from_name
from ttt_video.testing import assert_close


@pytest.mark.parametrize("name", ["ttt_linear_debug", "ttt_mlp_t_debug"])
def test_a_checkpoint_with_separate_projections_loads(name):
    torch.manual_seed(0)
    model = from_name(name).eval()
    separate = split_projections(model.cfg, model.state_dict())
    mixer = "backbone.blocks.0.mixer."
    names = [mixer + n for n, _ in projection_rows(model.cfg)]
    assert all(n in separate for n in names) and mixer + "fused_proj.weight" not in separate
    torch.manual_seed(1)
    other = from_name(name).eval()
    other.load_state_dict(separate)  # strict: no key left over or missing
    ids = torch.randint(0, 257, (2, 21))
    with torch.no_grad():
        assert torch.equal(model(ids)[0], other(ids)[0])
    assert other.state_dict().keys() == model.state_dict().keys()


def test_tables_follow_the_dtype_exactly():
    model = from_name("ttt_linear_debug").double()
    layer = model.backbone.blocks[0].mixer
    assert layer.lr_scale.dtype == torch.float64
    assert layer.lr_scale.item() == layer.base_lr / layer.head_dim  # not an fp32 rounding
    cos, sin = rope_cos_sin(torch.arange(16), layer.head_dim, 10000.0, torch.float64)
    assert torch.equal(layer.rope.cos2[:, : layer.head_dim : 2], cos)
    assert torch.equal(layer.rope.sin2[:, 1 : layer.head_dim : 2], sin)


def test_rope_phase_is_the_position_in_the_mini_batch_across_calls():
    """q of a call starting at stream position 19 (b = 16) is rotated by positions 3, 4, ...;
    the layer's table path equals ``apply_rope`` on those positions."""
    torch.manual_seed(0)
    layer = from_name("ttt_linear_t_debug").double().backbone.blocks[0].mixer
    x = torch.randn(2, 19 + 20, 64, dtype=torch.float64)
    _, state = layer(x[:, :19])
    q, *_ = layer.project(x[:, 19:], state)
    raw = torch.nn.functional.linear(x[:, 19:], layer.fused_proj.weight[:64]).view(2, 20, 4, 16)
    cos, sin = rope_cos_sin((19 + torch.arange(20)) % 16, 16, 10000.0, torch.float64)
    assert_close("q", apply_rope(raw, cos, sin), q, 1e-14)
