"""TTT-Linear and TTT-MLP sequence mixers (kernels/README.md sections 7, 8, 10) and their state.

Letters: ``B`` batch, ``T`` tokens in this call, ``D`` model width, ``H`` heads,
``d = D/H`` head dim, ``b`` mini-batch size, ``w`` conv width, ``s`` its dilation, ``m = 4d``
TTT-MLP hidden width, ``R`` rows of the fused input projection.

One call maps ``x: [B, T, D]`` (the block's RMSNorm output) to ``y: [B, T, D]``::

    q, k   = conv_q(x thetaQK), conv_k(x thetaQK)     (M)   or  x thetaQ, x thetaK   (T)
    v      = x thetaV ; q, k = RoPE(q, k, position mod b)
    lam    = base_lr * sigmoid(x . w_h + a_h) / d     [B, T, H]
    tau_i  = max(0, 1/(i+1) + eps_i)                  [b]
    o      = kernel(q, k, v, lam, tau)                = q + LN(zbar)
    y      = o_proj(gelu_tanh(x thetaG) * post_norm(o))      (gate: M only)

Every projection of ``x`` (``thetaQK`` or ``thetaQ, thetaK``, then ``thetaV``, ``thetaG`` and
the learning-rate weights ``w_h``) is one matmul with ``fused_proj.weight: [R, D]``
(``projection_rows``); checkpoints saved with the separate weights (``q_proj.weight``, ...,
``lr_weight``) load into it. The Q and K convs run as one convolution, and RoPE reads a
table of the ``b`` positions of a mini-batch kept with the layer.

A call with ``T == 1`` on a causal layer is a decode step (``ttt_decode``, primal form), with
the layer's ``impl`` as on every other path (``"naive"``/``"dual"``: the PyTorch step).
The state carries the kernel state (its position inside the mini-batch is the RoPE phase),
the Q/K conv tail and the absolute stream position, so that RoPE phases and conv history
continue across calls.

Video options (all off by default): ``causal=False`` (non-causal mini-batches),
``qk_l2_norm``, ``target_ln``, ``bidirectional``, ``residual_gate``.
``target_ln`` is done in the layer: the kernel's target is ``v - k``, so passing
``v' = k + LN(v - k)`` makes the target ``LN(v - k)`` (the inner LN's gamma/beta, eps 1e-6,
as the video paper's code does with its own std). ``bidirectional`` runs the kernel a second
time on the reversed ``q, k, v, lam`` (same projections and inner initial weights, fresh
state) and adds the re-reversed output to the forward one before ``post_norm``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ttt_video.kernels import TTTState, initial_state, ttt_decode, ttt_linear, ttt_mlp
from ttt_video.kernels.common import layer_norm
from ttt_video.layers.config import BlockConfig
from ttt_video.layers.conv import CausalConv1d, causal_conv, pad_with_tail
from ttt_video.layers.rope import RotaryTable, rotate


@dataclass(frozen=True)
class TTTLayerState:
    """Recurrent state of one TTT layer for a batch of streams.

    Attributes:
        ttt: the kernel state (inner weights at the current mini-batch start, ``Gacc``,
            position inside the mini-batch, which also gives the RoPE phase).
        qk_tail: ``[B, (w-1) s, D]`` last inputs of the Q/K convs (None without ``share_qk``).
        position: tokens consumed so far in the stream (absolute; bookkeeping only).
    """

    ttt: TTTState
    qk_tail: Tensor | None
    position: int

    def nbytes(self) -> int:
        """Memory held by the state's tensors, in bytes (constant in ``position``)."""
        tail = 0 if self.qk_tail is None else self.qk_tail.numel() * self.qk_tail.element_size()
        return self.ttt.nbytes() + tail

    def detach(self) -> TTTLayerState:
        """A copy cut from the autograd graph."""
        tail = None if self.qk_tail is None else self.qk_tail.detach()
        return TTTLayerState(self.ttt.detach(), tail, self.position)


torch.export.register_dataclass(TTTLayerState)


def projection_rows(cfg: BlockConfig) -> tuple[tuple[str, int], ...]:
    """The blocks of rows of ``fused_proj.weight``, in order: ``(name, rows)`` with the name of
    the separate weight each block replaces (as saved before the fusion, and as the official
    checkpoints name them after ``models/official.py``'s renaming).

    ``qk_proj.weight`` (M) or ``q_proj.weight, k_proj.weight`` (T), ``v_proj.weight``,
    ``g_proj.weight`` (with ``use_gate``): ``D`` rows each; ``lr_weight``: ``H`` rows.
    """
    D = cfg.width
    qk = ("qk_proj",) if cfg.share_qk else ("q_proj", "k_proj")
    gate = ("g_proj",) if cfg.use_gate else ()
    return (*((f"{n}.weight", D) for n in (*qk, "v_proj", *gate)), ("lr_weight", cfg.num_heads))


class TTTBase(nn.Module):
    """Projections, gates and inner-model parameters shared by TTT-Linear and TTT-MLP.

    Subclasses define ``inner_widths`` (widths ``d -> ... -> d`` of the inner model) and
    ``kernel`` (``ttt_linear`` or ``ttt_mlp``).
    """

    def __init__(self, cfg: BlockConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, H, d, b = cfg.width, cfg.num_heads, cfg.head_dim, cfg.mini_batch_size
        self.num_heads, self.head_dim, self.mini_batch_size = H, d, b
        rows = projection_rows(cfg)
        self.fused_proj = nn.Linear(D, sum(n for _, n in rows), bias=False)
        nn.init.normal_(self.fused_proj.weight, std=cfg.init_std)
        if cfg.share_qk:
            self.conv_q = CausalConv1d(D, cfg.conv_kernel, cfg.conv_dilation)
            self.conv_k = CausalConv1d(D, cfg.conv_kernel, cfg.conv_dilation)
        self.o_proj = nn.Linear(D, D, bias=False)
        self.lr_bias = nn.Parameter(torch.zeros(H))
        # base_lr / d as a tensor: a changed base_lr (warm-up) is no new constant to compile
        self.register_buffer("lr_scale", torch.zeros(()), persistent=False)
        self.base_lr = cfg.base_lr
        if cfg.causal:
            self.tau_offset = nn.Parameter(torch.zeros(b))
            self.register_buffer("tau_base", 1.0 / torch.arange(1, b + 1), persistent=False)
        self.ttt_norm_weight = nn.Parameter(torch.ones(H, d))
        self.ttt_norm_bias = nn.Parameter(torch.zeros(H, d))
        widths = (d, *self.inner_widths(d))
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            self.register_parameter(
                f"W{i + 1}", nn.Parameter(torch.randn(H, n_in, n_out) * cfg.init_std)
            )
            self.register_parameter(f"b{i + 1}", nn.Parameter(torch.zeros(H, n_out)))
        self.post_norm = nn.LayerNorm(D, eps=1e-6)
        self.residual_alpha = nn.Parameter(torch.full((D,), 0.1)) if cfg.residual_gate else None
        self.rope = RotaryTable(b, d, cfg.rope_theta, heads=2 * H)  # q and k
        self.register_load_state_dict_pre_hook(_fuse_projections)

    @property
    def base_lr(self) -> float:
        """The inner learning-rate scale (``cfg.base_lr`` unless set, e.g. by a warm-up)."""
        return self._base_lr

    @base_lr.setter
    def base_lr(self, value: float) -> None:
        self._base_lr = float(value)
        with torch.no_grad():
            self.lr_scale.fill_(self._base_lr / self.head_dim)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.base_lr = self._base_lr  # exact in the new dtype (fp64: not an fp32 rounding)
        return self

    @staticmethod
    def inner_widths(d: int) -> tuple[int, ...]:
        """Output widths of the inner layers for head dim ``d`` (the last one is ``d``)."""
        raise NotImplementedError

    @staticmethod
    def kernel(*args, **kwargs):
        """The kernel entry point (``ttt_linear`` or ``ttt_mlp``)."""
        raise NotImplementedError

    def inner_params(self) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """The learned initial inner weights ``([H, d_l, d_{l+1}], ...)`` and biases."""
        n = len(self.inner_widths(self.head_dim))
        ws = tuple(getattr(self, f"W{i + 1}") for i in range(n))
        return ws, tuple(getattr(self, f"b{i + 1}") for i in range(n))

    def tau(self) -> Tensor | None:
        """``tau: [b]``: ``max(0, 1/(i+1) + eps_i)`` (None for the non-causal variant)."""
        if not self.cfg.causal:
            return None
        return torch.clamp(self.tau_base.to(self.tau_offset.dtype) + self.tau_offset, min=0.0)

    def initial_state(self, batch_size: int) -> TTTLayerState:
        """Fresh state at the start of ``batch_size`` streams."""
        ws, bs = self.inner_params()
        tail = None
        if self.cfg.share_qk:
            tail = ws[0].new_zeros(batch_size, self.conv_q.tail_len, self.cfg.width)
        return TTTLayerState(initial_state(ws, bs, batch_size), tail, 0)

    def project(
        self, x: Tensor, state: TTTLayerState
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
        """Everything the layer reads from ``x: [B, T, D]``, from one matmul.

        Returns:
            ``q, k, v: [B, T, H, d]`` (RoPE and the video options applied), ``lam: [B, T, H]``,
            the gate's input ``[B, T, D]`` (None without ``use_gate``) and the new Q/K tail
            ``[B, (w-1) s, D]`` (None without ``share_qk``).
        """
        B, T, D = x.shape
        cfg, H, d = self.cfg, self.num_heads, self.head_dim
        out = self.fused_proj(x)  # [B, T, R]
        tail = None
        if cfg.share_qk:
            xp = pad_with_tail(out[..., :D], state.qk_tail, self.conv_q.tail_len)
            taps = torch.cat((self.conv_q.weight, self.conv_k.weight), 1).permute(2, 1, 0)
            bias = torch.cat((self.conv_q.bias, self.conv_k.bias)).view(2, D)  # taps [w, 2, D]
            qk = causal_conv(xp.unsqueeze(2), taps, bias, self.conv_q.dilation)
            tail, rest = xp[:, T:], D
        else:
            qk, rest = out[..., : 2 * D].unflatten(-1, (2, D)), 2 * D
        qk = qk.unflatten(-1, (H, d))  # [B, T, 2, H, d]
        if cfg.qk_l2_norm:
            qk = F.normalize(qk, dim=-1)
        qk = rotate(qk, *self.rope.rows(state.ttt.position, T))
        q, k = qk.unbind(2)
        v = out[..., rest : rest + D].unflatten(-1, (H, d))
        if cfg.target_ln:
            v = k + layer_norm(v - k, self.ttt_norm_weight, self.ttt_norm_bias)
        gate = out[..., rest + D : rest + 2 * D] if cfg.use_gate else None
        lam = torch.sigmoid(out[..., -H:] + self.lr_bias) * self.lr_scale
        return q, k, v, lam, gate, tail

    def run_kernel(self, q, k, v, lam, state: TTTState) -> tuple[Tensor, TTTState]:
        """Inner loop over ``q, k, v: [B, T, H, d]``, ``lam: [B, T, H]`` from ``state``."""
        ln_w, ln_b, tau = self.ttt_norm_weight, self.ttt_norm_bias, self.tau()
        if q.shape[1] == 1 and self.cfg.causal:
            return ttt_decode(
                q,
                k,
                v,
                lam,
                tau,
                ln_w,
                ln_b,
                state,
                mini_batch_size=self.mini_batch_size,
                impl=self.cfg.impl,
                keep_inner_norm=self.cfg.keep_inner_norm,
            )
        nones = (None,) * (2 * state.num_layers)
        return self.kernel(
            q,
            k,
            v,
            lam,
            tau,
            *nones,
            ln_w,
            ln_b,
            mini_batch_size=self.mini_batch_size,
            causal=self.cfg.causal,
            initial_state=state,
            output_final_state=True,
            impl=self.cfg.impl,
            keep_inner_norm=self.cfg.keep_inner_norm,
        )

    def forward(
        self, x: Tensor, state: TTTLayerState | None = None
    ) -> tuple[Tensor, TTTLayerState]:
        """Mix a chunk of the stream.

        Args:
            x: ``[B, T, D]`` the block's normalised input.
            state: the state after the previous chunk (None: start of the streams).

        Returns:
            ``y: [B, T, D]`` and the state after this chunk.
        """
        B, T, D = x.shape
        if self.cfg.bidirectional and state is not None:
            raise ValueError("state: a bidirectional TTT layer sees the whole stream; pass None")
        state = state if state is not None else self.initial_state(B)
        q, k, v, lam, gate, tail = self.project(x, state)
        o, final = self.run_kernel(q, k, v, lam, state.ttt)
        if self.cfg.bidirectional:
            rev = [t.flip(1) for t in (q, k, v, lam)]
            o_rev, _ = self.run_kernel(*rev, self.initial_state(B).ttt)
            o = o + o_rev.flip(1)
        y = self.post_norm(o.reshape(B, T, D))
        if gate is not None:
            y = F.gelu(gate, approximate="tanh") * y
        y = self.o_proj(y)
        if self.residual_alpha is not None:
            y = torch.tanh(self.residual_alpha) * y
        return y, TTTLayerState(final, tail, state.position + T)


def split_projections(cfg: BlockConfig, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state_dict`` (of a model whose TTT layers have config ``cfg``) with every
    ``fused_proj.weight`` replaced by the separate weights of ``projection_rows``, as copies;
    loading the result back fuses them again."""
    rows = projection_rows(cfg)
    out = {}
    for name, t in state_dict.items():
        if not name.endswith("fused_proj.weight"):
            out[name] = t
            continue
        prefix = name.removesuffix("fused_proj.weight")
        for (part_name, _), part in zip(rows, t.split([n for _, n in rows])):
            out[prefix + part_name] = part.clone()
    return out


def _fuse_projections(module: TTTBase, state_dict: dict, prefix: str, *args) -> None:
    """Load-state-dict pre-hook: a checkpoint with the separate projection weights
    (``projection_rows``) has them concatenated into ``fused_proj.weight``."""
    names = [prefix + name for name, _ in projection_rows(module.cfg)]
    if prefix + "fused_proj.weight" not in state_dict and all(n in state_dict for n in names):
        state_dict[prefix + "fused_proj.weight"] = torch.cat([state_dict.pop(n) for n in names])


class TTTLinear(TTTBase):
    """TTT-Linear: inner model ``x W1 + b1`` per head (``W1: [H, d, d]``, ``b1: [H, d]``)."""

    @staticmethod
    def inner_widths(d: int) -> tuple[int, ...]:
        return (d,)

    kernel = staticmethod(ttt_linear)


class TTTMLP(TTTBase):
    """TTT-MLP: inner model ``gelu_tanh(x W1 + b1) W2 + b2`` (``W1: [H, d, 4d]``, ``W2: [H, 4d, d]``)."""

    @staticmethod
    def inner_widths(d: int) -> tuple[int, ...]:
        return (4 * d, d)

    kernel = staticmethod(ttt_mlp)
