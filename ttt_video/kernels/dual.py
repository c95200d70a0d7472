"""The mini-batch dual form in PyTorch, with an explicit backward: the CPU path.

Letters: ``B`` batch, ``T`` tokens, ``H`` heads, ``d`` head dim, ``b`` mini-batch size,
``N`` mini-batches, ``R = B*H`` independent streams, ``L`` inner layers (1: TTT-Linear,
2: TTT-MLP), ``d_l`` input width of inner layer ``l``.

One inner layer ``l`` of mini-batch ``n`` (kernels/README.md section 3; ``X_0 = K``, ``Xb_0 = Q``)::

    Z_l   = X_l W_l + c_l                      X_{l+1} = gelu(Z_l)
    G_L-1 = dl/dZ_L-1 (closed form)            G_l = (G_{l+1} W_{l+1}^T) * gelu'(Z_l)
    Zb_l  = Xb_l W_l + c_l - (M o Xb_l X_l^T) G_l - M G_l - tau o (Xb_l gW_l + gc_l)
    Xb_{l+1} = gelu(Zb_l)                      output: Zb_{L-1}
    P_l   = gW_l + X_l^T (lam o G_l)           commit: W_l <- W_l - tau_{b-1} P_l

with ``M[i, j] = mask[i, j] tau_i lam_j`` (``mask`` lower-triangular when causal) and
``(gW, gc)`` the gradient accumulated before the mini-batch (non-zero only for the first
mini-batch of a stream that starts mid-mini-batch). The stream is padded on the left by the
state's position and on the right to ``N*b`` tokens with zero learning rate, so padded
tokens change nothing. Everything that does not depend on the state (``Q K^T``, ``M``, the
targets, the output LayerNorm) is computed for all mini-batches at once; only the chain of
states is walked one mini-batch at a time. The backward walks that chain in reverse,
recomputing each group of ``save_every`` mini-batches from a state saved by the forward.
The derivation is in ``kernels/README.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ttt_video.kernels.common import (
    gelu_tanh,
    gelu_tanh_grad2,
    gelu_tanh_vjp,
    layer_norm,
    ln_backward,
    ln_stats,
    without_autocast,
)
from ttt_video.kernels.state import TTTState


@without_autocast
def ttt_dual(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lam: Tensor,
    tau: Tensor,
    ln_weight: Tensor,
    ln_bias: Tensor,
    state: TTTState,
    mini_batch_size: int,
    causal: bool = True,
    save_every: int = 16,
) -> tuple[Tensor, TTTState]:
    """Dual-form TTT over a stream; same contract as ``naive.ttt_naive``.

    Args:
        q, k, v: ``[B, T, H, d]``.
        lam: ``[B, T, H]``.
        tau: ``[b]`` (ignored when ``causal`` is False: the non-causal form uses ``1/b``).
        ln_weight, ln_bias: ``[H, d]``.
        state: batched ``TTTState`` (``position`` must be 0 when not causal).
        mini_batch_size: ``b``.
        save_every: the forward keeps the state every this many mini-batches for the
            backward (memory ``~ N / save_every`` states; the backward recomputes the rest).

    Returns:
        ``o: [B, T, H, d]`` (dtype of ``q``) and the final ``TTTState``.
    """
    B, T, H, d = q.shape
    b, p, L = mini_batch_size, state.position, state.num_layers
    dt = torch.promote_types(q.dtype, torch.float32)
    N = math.ceil((p + T) / b)
    pad = (p, N * b - p - T)

    def blocks(x: Tensor) -> Tensor:  # [B, T, H, d] -> [R, N, b, d]
        x = F.pad(x.to(dt).permute(0, 2, 3, 1), pad).permute(0, 1, 3, 2)
        return x.reshape(B * H, N, b, x.shape[-1])

    qb, kb = blocks(q), blocks(k)
    tgt = blocks(v - k)
    lamb = F.pad(lam.to(dt).transpose(1, 2), pad).reshape(B * H, N, b)
    tau_eff = tau.to(dt) if causal else torch.full((b,), 1.0 / b, dtype=dt, device=q.device)
    lnw = ln_weight.to(dt).expand(B, H, d).reshape(B * H, 1, d)
    lnb = ln_bias.to(dt).expand(B, H, d).reshape(B * H, 1, d)
    commit_last = (p + T) % b == 0
    flat = [
        t.to(dt).reshape(B * H, *t.shape[2:])
        for t in state.weights + state.biases + state.grad_weights + state.grad_biases
    ]
    outs = _DualScan.apply(
        qb, kb, tgt, lamb, tau_eff, lnw, lnb, causal, commit_last, save_every, L, *flat
    )
    zbar = outs[0].reshape(B, H, N * b, d)[:, :, p : p + T].transpose(1, 2)
    o = q.to(dt) + layer_norm(zbar, ln_weight.to(dt), ln_bias.to(dt))
    fin = [t.reshape(B, H, *t.shape[1:]) for t in outs[1:]]
    final = TTTState(
        tuple(fin[:L]),
        tuple(fin[L : 2 * L]),
        tuple(fin[2 * L : 3 * L]),
        tuple(fin[3 * L :]),
        (p + T) % b,
    )
    return o.to(q.dtype), final


def _masked_lr(lam: Tensor, tau: Tensor, causal: bool) -> Tensor:
    """``M[r, n, i, j] = mask[i, j] * tau_i * lam[r, n, j]``: ``[R, N, b, b]``."""
    m = tau[:, None] * lam[..., None, :]
    return m.tril() if causal else m


@dataclass
class _Chain:
    """What the state chain reads, for all mini-batches: blocks ``[R, N, b, *]``.

    ``AM0 = M o (Q K^T + 1)`` is the ``(A_0 + M)`` factor of the first inner layer and
    ``gy0 = lnw o (lnb - tgt)`` the state-independent part of ``dl/dxh``: both are
    computed once for every mini-batch.
    """

    q: Tensor
    k: Tensor
    tgt: Tensor
    lam: Tensor
    tau: Tensor
    lnw: Tensor
    lnb: Tensor
    M: Tensor
    S0: Tensor
    AM0: Tensor
    gy0: Tensor
    lnw2: Tensor
    commit_last: bool

    @classmethod
    def build(cls, q, k, tgt, lam, tau, lnw, lnb, causal: bool, commit_last: bool) -> _Chain:
        M = _masked_lr(lam, tau, causal)
        S0 = q @ k.transpose(-1, -2)
        AM0, gy0 = M * (S0 + 1.0), lnw.unsqueeze(1) * (lnb.unsqueeze(1) - tgt)
        return cls(q, k, tgt, lam, tau, lnw, lnb, M, S0, AM0, gy0, lnw * lnw, commit_last)

    @property
    def num_minibatches(self) -> int:
        return self.q.shape[1]

    def step(self, n: int, cur: tuple) -> tuple[Tensor, tuple, _Cache]:
        commit = n < self.num_minibatches - 1 or self.commit_last
        return _step(self, n, cur, commit=commit, first=n == 0)


class _DualScan(torch.autograd.Function):
    """The state chain of the dual form. Inputs are padded blocks ``[R, N, b, *]``."""

    @staticmethod
    def forward(ctx, q, k, tgt, lam, tau, lnw, lnb, causal, commit_last, save_every, L, *state):
        chain = _Chain.build(q, k, tgt, lam, tau, lnw, lnb, causal, commit_last)
        cur = _unflatten(state, L)
        zbar = q.new_empty(q.shape)
        checkpoints = []
        for n in range(chain.num_minibatches):
            if n % save_every == 0:
                checkpoints.append(cur)
            zbar[:, n], cur, _ = chain.step(n, cur)
        ctx.save_for_backward(q, k, tgt, lam, tau, lnw, lnb)
        ctx.checkpoints = checkpoints
        ctx.meta = (causal, commit_last, save_every, L)
        # An output must not be an input object: clone what a non-committing chain passed through.
        final = [t.clone() if any(t is s for s in state) else t for t in _flatten(cur)]
        return (zbar, *final)

    @staticmethod
    @without_autocast
    def backward(ctx, dzbar, *dfinal):
        q, k, tgt, lam, tau, lnw, lnb = ctx.saved_tensors
        causal, commit_last, every, L = ctx.meta
        chain = _Chain.build(q, k, tgt, lam, tau, lnw, lnb, causal, commit_last)
        N = chain.num_minibatches
        if dzbar is None:
            dzbar = torch.zeros_like(q)
        last = _flatten(ctx.checkpoints[-1])
        # owned, dense copies: the walk accumulates the weight adjoints in place
        owned = [
            torch.zeros(t.shape, dtype=t.dtype) if g is None else g.clone()
            for g, t in zip(dfinal, last)
        ]
        dstate = _unflatten(owned, L)
        grads = _Grads(q, lam, lnw)
        for g0 in reversed(range(0, N, every)):
            cur, caches = ctx.checkpoints[g0 // every], []
            for n in range(g0, min(g0 + every, N)):
                _, cur, cache = chain.step(n, cur)
                caches.append(cache)
            for n in reversed(range(g0, min(g0 + every, N))):
                dstate = _step_backward(chain, n, caches[n - g0], dzbar[:, n], dstate, grads)
        dM = grads.dM + grads.dA0 * (chain.S0 + 1.0)
        dS0 = grads.dA0 * chain.M
        grads.dq += dS0 @ k
        grads.dk += dS0.transpose(-1, -2) @ q
        if causal:
            dM = dM.tril()
        dlam = grads.dlam + (dM * tau[:, None]).sum(-2)
        dtau = (grads.dtau + (dM * lam[..., None, :]).sum((0, 1, 3))) if causal else None
        nones = (None,) * 4
        return (
            grads.dq,
            grads.dk,
            grads.dtgt,
            dlam,
            dtau,
            grads.dlnw,
            grads.dlnb,
            *nones,
            *_flatten(dstate),
        )


class _Grads:
    """Buffers for the gradients of the non-state inputs, filled one mini-batch at a time."""

    def __init__(self, q: Tensor, lam: Tensor, lnw: Tensor):
        R, N, b, _ = q.shape
        self.dq, self.dk, self.dtgt = (torch.zeros_like(q) for _ in range(3))
        self.dlam = torch.zeros_like(lam)
        self.dM = q.new_zeros(R, N, b, b)  # from inner layers l > 0
        self.dA0 = q.new_zeros(R, N, b, b)  # adjoint of A_0, finished after the walk
        self.dtau = q.new_zeros(b)
        self.dlnw, self.dlnb = torch.zeros_like(lnw), torch.zeros_like(lnw)


def _flatten(st: tuple) -> list[Tensor]:
    W, c, gW, gc = st
    return [*W, *c, *gW, *gc]


def _unflatten(flat, L: int) -> tuple:
    flat = list(flat)
    return (flat[:L], flat[L : 2 * L], flat[2 * L : 3 * L], flat[3 * L :])


class _Cache(NamedTuple):
    """Intermediates of one mini-batch kept for its backward (lists are per inner layer)."""

    cur: tuple  # the state the mini-batch started from
    X: list  # inputs of the inner layers on K                 [R, b, d_l]
    Z: list  # their pre-activations                            [R, b, d_{l+1}]
    xh: Tensor  # normalised Z_{L-1}                            [R, b, d]
    mu: Tensor  # its mean                                      [R, b, 1]
    rstd: Tensor  # its 1 / sqrt(var + eps)                      [R, b, 1]
    gy: Tensor  # dl/dxh                                         [R, b, d]
    G: list  # dl/dZ_l                                          [R, b, d_{l+1}]
    Xb: list  # inputs of the inner layers on Q (dual chain)    [R, b, d_l]
    Zb: list  # their outputs                                   [R, b, d_{l+1}]
    S: list  # Xb_l X_l^T for l > 0 (None for l = 0)            [R, b, b]
    AM: list  # A_l + M                                          [R, b, b]
    Pc: list  # accumulated bias gradient after the mini-batch  [R, d_{l+1}]
    commit: bool
    first: bool


def _step(ch: _Chain, n: int, cur: tuple, commit: bool, first: bool):
    """Forward of mini-batch ``n``: returns ``(Zb_{L-1}: [R, b, d], next state, cache)``."""
    W, c, gW, gc = cur
    L = len(W)
    q, k, lam, M = ch.q[:, n], ch.k[:, n], ch.lam[:, n], ch.M[:, n]
    X, Z = [k], []
    for l in range(L):
        Z.append(torch.baddbmm(c[l].unsqueeze(1), X[l], W[l]))
        if l < L - 1:
            X.append(gelu_tanh(Z[l]))
    xh, mu, rstd = ln_stats(Z[-1])
    gy = torch.addcmul(ch.gy0[:, n], ch.lnw2, xh)  # lnw o (lnw o xh + lnb - tgt)
    G = [None] * L
    G[-1] = ln_backward(gy, Z[-1], mu, rstd)
    for l in reversed(range(L - 1)):
        G[l] = gelu_tanh_vjp(G[l + 1] @ W[l + 1].transpose(-1, -2), Z[l])
    Xb, Zb, S, AM = [q], [], [None], [ch.AM0[:, n]]
    for l in range(L):
        if l > 0:
            Xb.append(gelu_tanh(Zb[l - 1]))
            S.append(Xb[l] @ X[l].transpose(-1, -2))
            AM.append(M * (S[l] + 1.0))
        zb = torch.baddbmm(torch.baddbmm(c[l].unsqueeze(1), Xb[l], W[l]), AM[l], G[l], alpha=-1.0)
        if first:  # the gradient accumulated before this call (zero at a mini-batch border)
            zb = zb - ch.tau[:, None] * torch.baddbmm(gc[l].unsqueeze(1), Xb[l], gW[l])
        Zb.append(zb)
    lamG = [lam[..., None] * g for g in G]
    Pc = [lamG[l].sum(1) + gc[l] if first else lamG[l].sum(1) for l in range(L)]
    if commit:  # W <- W - tau_{b-1} (gW + X^T (lam o G)), without materialising P
        step = -float(ch.tau[-1])
        base = [torch.add(W[l], gW[l], alpha=step) if first else W[l] for l in range(L)]
        nxt = (
            [torch.baddbmm(base[l], X[l].transpose(-1, -2), lamG[l], alpha=step) for l in range(L)],
            [torch.add(b_, p, alpha=step) for b_, p in zip(c, Pc)],
            [_zeros_like(w) for w in gW],
            [_zeros_like(g) for g in gc],
        )
    else:  # the stream ends mid-mini-batch: keep W, carry the accumulated gradient P
        P = [X[l].transpose(-1, -2) @ lamG[l] for l in range(L)]
        nxt = (list(W), list(c), [gW[l] + P[l] if first else P[l] for l in range(L)], Pc)
    return Zb[-1], nxt, _Cache(cur, X, Z, xh, mu, rstd, gy, G, Xb, Zb, S, AM, Pc, commit, first)


def _zeros_like(t: Tensor) -> Tensor:
    """Zeros shaped like ``t`` without writing them: an expanded scalar, read-only."""
    return t.new_zeros(()).expand_as(t)


def _step_backward(ch: _Chain, n: int, cc: _Cache, dzb: Tensor, dnext: tuple, grads: _Grads):
    """Backward of mini-batch ``n``: the adjoint of its start state from that of the next.

    ``dzb: [R, b, d]`` is the adjoint of the mini-batch's output ``Zb_{L-1}``; gradients of
    the non-state inputs are written into ``grads`` at mini-batch ``n``.
    """
    W, c, gW, gc = cc.cur
    X, Z, G, Xb, Zb = cc.X, cc.Z, cc.G, cc.Xb, cc.Zb
    lam, M, tau, L = ch.lam[:, n], ch.M[:, n], ch.tau, len(W)
    dWn, dcn, dgWn, dgcn = dnext
    # dP, the adjoint of P = gW + X^T (lam o G), is -t dW' after a commit W' = W - t P and
    # dgW' without one; it is only ever used through small products, never materialised.
    t = float(tau[-1])
    scale, dPW, dPc = (-t, dWn, [-t * g for g in dcn]) if cc.commit else (1.0, dgWn, dgcn)
    dgW, dgc = None, None
    if cc.first:  # only the first mini-batch reads the accumulated gradient it started with
        dgW = [scale * g for g in dPW]
        dgc = list(dPc)
        if cc.commit:
            grads.dtau[-1] -= sum((g * a).sum() for g, a in zip(dWn, gW))
    if cc.commit:
        grads.dtau[-1] -= sum((g * p).sum() for g, p in zip(dcn, cc.Pc))
    dW, dc = dWn, list(dcn)  # dW accumulates in place: the caller hands over ownership
    dG, dX, dlam = [], [], torch.zeros_like(lam)
    for l in range(L):
        GdW = G[l] @ dPW[l].transpose(-1, -2)  # [R, b, d_l]
        if cc.commit:
            grads.dtau[-1] -= (lam[..., None] * X[l] * GdW).sum()
        dX.append((scale * lam)[..., None] * GdW)
        XdW = X[l] @ dPW[l]  # [R, b, d_{l+1}]
        dG.append(lam[..., None] * torch.add(dPc[l].unsqueeze(1), XdW, alpha=scale))
        dlam += scale * (X[l] * GdW).sum(-1) + (G[l] * dPc[l].unsqueeze(1)).sum(-1)
    # dual chain: Zb_l = Xb_l W_l + c_l - (A_l + M) G_l - [first] tau o (Xb_l gW_l + gc_l)
    for l in reversed(range(L)):
        dW[l].baddbmm_(Xb[l].transpose(-1, -2), dzb)
        dc[l] = dc[l] + dzb.sum(1)
        dA = -dzb @ G[l].transpose(-1, -2)  # [R, b, b]
        dG[l] = torch.baddbmm(dG[l], cc.AM[l].transpose(-1, -2), dzb, alpha=-1.0)
        dXb = dzb @ W[l].transpose(-1, -2)
        if cc.first:
            tdz = tau[:, None] * dzb
            grads.dtau -= (dzb * torch.baddbmm(gc[l].unsqueeze(1), Xb[l], gW[l])).sum((0, 2))
            dgW[l] = torch.baddbmm(dgW[l], Xb[l].transpose(-1, -2), tdz, alpha=-1.0)
            dgc[l] = dgc[l] - tdz.sum(1)
            dXb = torch.baddbmm(dXb, tdz, gW[l].transpose(-1, -2), alpha=-1.0)
        if l == 0:
            grads.dA0[:, n] = dA  # turned into dM, dQ and dK for all mini-batches at once
            grads.dq[:, n] = dXb
        else:
            grads.dM[:, n] += dA * (cc.S[l] + 1.0)
            dS = dA * M
            dXb = torch.baddbmm(dXb, dS, X[l])
            dX[l] = torch.baddbmm(dX[l], dS.transpose(-1, -2), Xb[l])
            dzb = gelu_tanh_vjp(dXb, Zb[l - 1])
    dZ = [torch.zeros_like(z) for z in Z]
    # G_l = (G_{l+1} W_{l+1}^T) o gelu'(Z_l), l < L-1
    for l in range(L - 1):
        h = G[l + 1] @ W[l + 1].transpose(-1, -2)
        dh = gelu_tanh_vjp(dG[l], Z[l])
        dZ[l] = dZ[l] + dG[l] * h * gelu_tanh_grad2(Z[l])
        dG[l + 1] = torch.baddbmm(dG[l + 1], dh, W[l + 1])
        dW[l + 1].baddbmm_(dh.transpose(-1, -2), G[l + 1])
    dZ[-1] = dZ[-1] + _ln_grad_backward(ch, n, cc, dG[-1], grads)
    # Z_l = X_l W_l + c_l, X_{l+1} = gelu(Z_l), X_0 = K
    for l in reversed(range(L)):
        dW[l].baddbmm_(X[l].transpose(-1, -2), dZ[l])
        dc[l] = dc[l] + dZ[l].sum(1)
        dXl = torch.baddbmm(dX[l], dZ[l], W[l].transpose(-1, -2))
        if l > 0:
            dZ[l - 1] = dZ[l - 1] + gelu_tanh_vjp(dXl, Z[l - 1])
        else:
            grads.dk[:, n] = dXl
    grads.dlam[:, n] = dlam
    return (dW, dc, dgW, dgc)


def _ln_grad_backward(ch: _Chain, n: int, cc: _Cache, a: Tensor, grads: _Grads) -> Tensor:
    """Adjoint through ``G = J(Z) gy`` (the closed-form inner gradient): returns ``dZ``.

    ``a = dG: [R, b, d]``. ``J`` is the symmetric Jacobian of the normalisation, so
    ``dgy = J a``; the dependence of ``J`` on ``Z`` (through ``xh`` and ``s = 1/rstd``)
    gives the rest.
    Gradients of the target and of the LN weight and bias go into ``grads``.
    """
    xh, z, mu, rstd, gy, lnw = cc.xh, cc.Z[-1], cc.mu, cc.rstd, cc.gy, ch.lnw
    dgy = ln_backward(a, z, mu, rstd)
    grads.dtgt[:, n] = -lnw * dgy
    grads.dlnw += (dgy * (2 * lnw * xh + ch.lnb - ch.tgt[:, n])).sum(1, keepdim=True)
    grads.dlnb += (dgy * lnw).sum(1, keepdim=True)
    mean = partial(torch.mean, dim=-1, keepdim=True)
    dxh = dgy * ch.lnw2 - (a * mean(gy * xh) + gy * mean(a * xh)) * rstd
    ds = -(a * cc.G[-1]).sum(-1, keepdim=True) * rstd
    return ln_backward(dxh, z, mu, rstd) + ds * xh / xh.shape[-1]
