"""Import/export of the paper's official PyTorch checkpoints.

``reference_logits`` is an independent float64 re-statement of the official model's forward,
written from our reading of its conventions (names, ``[H, 1, ...]`` shapes, ``nn.Conv1d``
padding-then-truncate causal convs, RoPE done by moving pair members into two halves and
rotating the halves, ``token_idx = 1/(i+1) + learnable_token_idx`` clamped at 0, remainder
mini-batches of size ``r`` using ``token_idx[:r]``), with the inner loop in primal form and
the inner gradients taken by autograd.
"""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from ttt_video.models import CheckpointMismatchError, from_name, from_official, to_official
from ttt_video.testing import assert_close


@pytest.fixture
def fp64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def official_config(layer_type="linear", m=True):
    return {
        "vocab_size": 50, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
        "num_attention_heads": 2, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
        "ttt_layer_type": layer_type, "ttt_base_lr": 1.0, "mini_batch_size": 4,
        "pre_conv": m, "conv_kernel": 4, "share_qk": m, "use_gate": m,
        "tie_word_embeddings": True, "architectures": ["TTTForCausalLM"],
    }  # fmt: skip


def official_state_dict(cfg, seed=0):
    """Random tensors under the official names and shapes."""
    g = torch.Generator().manual_seed(seed)
    D, H, F_, V = (
        cfg["hidden_size"],
        cfg["num_attention_heads"],
        cfg["intermediate_size"],
        cfg["vocab_size"],
    )
    d, b, w = D // H, cfg["mini_batch_size"], cfg["conv_kernel"]

    def rnd(*shape, scale=0.3, shift=0.0):
        return shift + scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    widths = [d, d] if cfg["ttt_layer_type"] == "linear" else [d, 4 * d, d]
    sd = {"model.embed_tokens.weight": rnd(V, D), "model.norm.weight": rnd(D, shift=1.0)}
    for i in range(cfg["num_hidden_layers"]):
        p, s = f"model.layers.{i}.", f"model.layers.{i}.seq_modeling_block."
        sd |= {p + "seq_norm.weight": rnd(D, shift=1.0), p + "ffn_norm.weight": rnd(D, shift=1.0)}
        sd |= {p + f"mlp.{n}.weight": rnd(F_, D) for n in ("gate_proj", "up_proj")}
        sd[p + "mlp.down_proj.weight"] = rnd(D, F_)
        if cfg["pre_conv"]:
            sd |= {p + "conv.norm.weight": rnd(D, shift=1.0), p + "conv.conv.weight": rnd(D, 1, w)}
            sd[p + "conv.conv.bias"] = rnd(D)
        names = ["q_proj", "v_proj", "o_proj"] + (["g_proj"] if cfg["use_gate"] else [])
        names += [] if cfg["share_qk"] else ["k_proj"]
        sd |= {s + n + ".weight": rnd(D, D) for n in names}
        if cfg["share_qk"]:
            for n in ("conv_q", "conv_k"):
                sd |= {s + n + ".weight": rnd(D, 1, w), s + n + ".bias": rnd(D)}
        sd[s + "learnable_ttt_lr_weight"] = rnd(H, 1, D)
        sd[s + "learnable_ttt_lr_bias"] = rnd(H, 1)
        sd[s + "learnable_token_idx"] = rnd(b, scale=0.4)  # some 1/(i+1) + eps fall below 0
        sd[s + "ttt_norm_weight"] = rnd(H, d, shift=1.0)
        sd[s + "ttt_norm_bias"] = rnd(H, d, scale=0.1)
        for n, (a, c) in enumerate(zip(widths[:-1], widths[1:])):
            sd[s + f"W{n + 1}"] = rnd(H, a, c, scale=a**-0.5)
            sd[s + f"b{n + 1}"] = rnd(H, 1, c, scale=0.1)
        sd[s + "post_norm.weight"], sd[s + "post_norm.bias"] = rnd(D, shift=1.0), rnd(D, scale=0.1)
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    return sd


def _rms(x, w, eps):
    return w * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _ln(x, w, b):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6) * w + b


def _conv(x, weight, bias):  # padded on both sides by w-1, keep the first T outputs
    T, w = x.shape[1], weight.shape[-1]
    return F.conv1d(x.transpose(1, 2), weight, bias, padding=w - 1, groups=x.shape[-1])[
        ..., :T
    ].transpose(1, 2)


def _rope_halves(x, pos, theta):  # pair members moved into two halves, halves rotated, moved back
    d = x.shape[-1]
    xh = x.unflatten(-1, (d // 2, 2)).transpose(-1, -2).flatten(-2)
    ang = pos[:, None].double() * theta ** (-torch.arange(0, d, 2).double() / d)
    cos, sin = torch.cat((ang, ang), -1).cos()[:, None], torch.cat((ang, ang), -1).sin()[:, None]
    rot = torch.cat((-xh[..., d // 2 :], xh[..., : d // 2]), -1)
    return (xh * cos + rot * sin).unflatten(-1, (2, d // 2)).transpose(-1, -2).flatten(-2)


def _inner(x, params):
    z = x @ params[0] + params[1]
    if len(params) == 4:
        z = F.gelu(z, approximate="tanh") @ params[2] + params[3]
    return z


def _primal_ttt(q, k, v, lam, tau, params, ln_w, ln_b, b):
    """q, k, v: [B, H, T, d]; lam: [B, H, T]; params: [B, H, ...] per inner tensor."""
    T, out = q.shape[2], []
    for start in range(0, T, b):
        r = min(b, T - start)
        grads = []
        for j in range(start, start + r):
            w0 = [p.detach().requires_grad_() for p in params]
            z = _inner(k[:, :, j : j + 1], w0)
            loss = 0.5 * (_ln(z, ln_w, ln_b) - (v - k)[:, :, j : j + 1]).pow(2).sum()
            grads.append(torch.autograd.grad(loss, w0))
        for i in range(r):
            acc = [
                sum(
                    lam[:, :, start + j].view(*lam.shape[:2], *[1] * (p.dim() - 2)) * grads[j][n]
                    for j in range(i + 1)
                )
                for n, p in enumerate(params)
            ]
            w_i = [p - tau[i] * a for p, a in zip(params, acc)]
            out.append(
                q[:, :, start + i : start + i + 1]
                + _ln(_inner(q[:, :, start + i : start + i + 1], w_i), ln_w, ln_b)
            )
        params = w_i
    return torch.cat(out, 2)


def reference_logits(cfg, sd, ids):
    D, H, b, eps = (
        cfg["hidden_size"],
        cfg["num_attention_heads"],
        cfg["mini_batch_size"],
        cfg["rms_norm_eps"],
    )
    d, (B, T) = D // H, ids.shape
    h = sd["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p, s = f"model.layers.{i}.", f"model.layers.{i}.seq_modeling_block."
        if cfg["pre_conv"]:
            h = h + _conv(
                _rms(h, sd[p + "conv.norm.weight"], eps),
                sd[p + "conv.conv.weight"],
                sd[p + "conv.conv.bias"],
            )
        x = _rms(h, sd[p + "seq_norm.weight"], eps)
        xq = x @ sd[s + "q_proj.weight"].T
        if cfg["share_qk"]:
            xq, xk = (
                _conv(xq, sd[s + f"{n}.weight"], sd[s + f"{n}.bias"]) for n in ("conv_q", "conv_k")
            )
        else:
            xk = x @ sd[s + "k_proj.weight"].T
        heads = [t.view(B, T, H, d) for t in (xq, xk, x @ sd[s + "v_proj.weight"].T)]
        pos = torch.arange(T) % b
        q, k = (_rope_halves(t, pos, cfg["rope_theta"]).transpose(1, 2) for t in heads[:2])
        v = heads[2].transpose(1, 2)
        gate = (
            torch.einsum("btc,hc->bht", x, sd[s + "learnable_ttt_lr_weight"][:, 0])
            + sd[s + "learnable_ttt_lr_bias"][:, 0, None]
        )
        lam = cfg["ttt_base_lr"] * torch.sigmoid(gate) / d
        tau = torch.clamp(1.0 / torch.arange(1, b + 1) + sd[s + "learnable_token_idx"], min=0)
        n_inner = 2 if cfg["ttt_layer_type"] == "linear" else 4
        names = ["W1", "b1", "W2", "b2"][:n_inner]
        params = [sd[s + n].expand(B, *sd[s + n].shape) for n in names]
        o = _primal_ttt(
            q,
            k,
            v,
            lam,
            tau,
            params,
            sd[s + "ttt_norm_weight"][:, None],
            sd[s + "ttt_norm_bias"][:, None],
            b,
        )
        y = _ln(
            o.transpose(1, 2).reshape(B, T, D), sd[s + "post_norm.weight"], sd[s + "post_norm.bias"]
        )
        if cfg["use_gate"]:
            y = F.gelu(x @ sd[s + "g_proj.weight"].T, approximate="tanh") * y
        h = h + y @ sd[s + "o_proj.weight"].T
        z = _rms(h, sd[p + "ffn_norm.weight"], eps)
        mlp = F.silu(z @ sd[p + "mlp.gate_proj.weight"].T) * (z @ sd[p + "mlp.up_proj.weight"].T)
        h = h + mlp @ sd[p + "mlp.down_proj.weight"].T
    return _rms(h, sd["model.norm.weight"], eps) @ sd["lm_head.weight"].T


@pytest.mark.parametrize("layer_type", ["linear", "mlp"])
@pytest.mark.parametrize("m", [True, False], ids=["M", "T"])
def test_from_official_matches_the_official_semantics(fp64, layer_type, m):
    cfg = official_config(layer_type, m)
    sd = official_state_dict(cfg)
    ids = torch.randint(0, cfg["vocab_size"], (2, 11), generator=torch.Generator().manual_seed(3))
    model = from_official(cfg, sd)
    assert_close("logits", reference_logits(cfg, sd, ids), model(ids)[0], 1e-10)


def test_learnable_token_idx_is_an_offset_of_one_over_position(fp64):
    cfg = official_config()
    sd = official_state_dict(cfg)
    eps = sd["model.layers.0.seq_modeling_block.learnable_token_idx"]
    tau = from_official(cfg, sd).backbone.blocks[0].mixer.tau()
    assert_close("tau", torch.clamp(1.0 / torch.arange(1, 5) + eps, min=0), tau)
    assert (tau == 0).any(), "the test state_dict should exercise the clamp"


@pytest.mark.parametrize("name", ["ttt_linear_debug", "ttt_mlp_t_debug"])
def test_round_trip_is_exact(name):
    model = from_name(name)
    cfg, sd = to_official(model)
    back = from_official(cfg, sd)
    assert back.cfg == replace(model.cfg, ttt_base_lr=model.cfg.base_lr)
    ours, theirs = model.state_dict(), back.state_dict()
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k
    cfg2, sd2 = to_official(back)
    assert cfg2 == cfg and all(torch.equal(sd[k], sd2[k]) for k in sd)


def test_mismatches_list_every_offending_key():
    cfg = official_config()
    sd = official_state_dict(cfg)
    del sd["model.layers.1.seq_modeling_block.W1"]
    sd["model.layers.0.seq_modeling_block.k_proj.weight"] = torch.zeros(16, 16)
    sd["model.layers.0.seq_modeling_block.b1"] = torch.zeros(2, 8)
    with pytest.raises(CheckpointMismatchError) as err:
        from_official(cfg, sd)
    msg = str(err.value)
    assert "missing (1): model.layers.1.seq_modeling_block.W1" in msg
    assert "unexpected (1): model.layers.0.seq_modeling_block.k_proj.weight" in msg
    assert "model.layers.0.seq_modeling_block.b1 (2, 8) != (2, 1, 8)" in msg


def test_untied_head_and_bad_config():
    cfg = official_config()
    sd = official_state_dict(cfg)
    sd["lm_head.weight"] = sd["lm_head.weight"] + 1.0
    with pytest.raises(ValueError, match="lm_head.weight"):
        from_official(cfg, sd)
    model = from_official({**cfg, "tie_word_embeddings": False}, sd)
    assert torch.equal(model.head.weight, sd["lm_head.weight"].float())
    with pytest.raises(ValueError, match="ttt_layer_type"):
        from_official({**cfg, "ttt_layer_type": "rnn"}, sd)
    with pytest.raises(ValueError, match="mixer"):
        to_official(from_name("attention_debug"))
