"""Pieces shared by every form of the TTT computation: the inner LayerNorm, its closed-form
gradient, gelu_tanh and its derivatives, and the argument checks of the public entry points.

Letters: ``B`` batch, ``T`` tokens, ``H`` heads, ``d`` head dim, ``b`` mini-batch size,
``...`` any leading dimensions. LayerNorm is always over the last dimension.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LN_EPS = 1e-6
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = LN_EPS) -> Tensor:
    """Per-head LayerNorm: ``x: [..., H, ?, d]``-broadcastable with ``weight, bias``."""
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * weight + bias


def ln_stats(z: Tensor, eps: float = LN_EPS) -> tuple[Tensor, Tensor]:
    """Return ``(xh, s)``: normalised ``z`` and ``s = sqrt(var + eps)`` (``[..., 1]``)."""
    mu = z.mean(-1, keepdim=True)
    s = torch.sqrt((z - mu).pow(2).mean(-1, keepdim=True) + eps)
    return (z - mu) / s, s


def ln_l2_grad(z: Tensor, target: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Closed-form ``dl/dz`` of ``l = 1/2 ||LN(z) - target||^2`` (TTT_SPEC section 2).

    ``z, target: [..., d]``; ``weight, bias`` broadcast to them. Returns ``[..., d]``.
    """
    xh, s = ln_stats(z)
    gy = weight * (weight * xh + bias - target)
    return ln_backward(gy, xh, s)


def ln_backward(gy: Tensor, xh: Tensor, s: Tensor) -> Tensor:
    """Back-propagate ``gy = dl/dxh`` through ``xh = (z - mean) / s``: returns ``dl/dz``.

    The Jacobian of the normalisation is symmetric, so this also maps ``dz -> dxh``-space
    adjoints in the custom backward of the dual form.
    """
    return (gy - gy.mean(-1, keepdim=True) - xh * (gy * xh).mean(-1, keepdim=True)) / s


def gelu_tanh(x: Tensor) -> Tensor:
    """The tanh approximation of GELU used by the paper's inner MLP."""
    return 0.5 * x * (1.0 + torch.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x.pow(3))))


def gelu_tanh_grad(x: Tensor) -> Tensor:
    """``d gelu_tanh / dx``."""
    t = torch.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x.pow(3)))
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * x.pow(2))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du


def gelu_tanh_grad2(x: Tensor) -> Tensor:
    """``d^2 gelu_tanh / dx^2`` (the custom backward of TTT-MLP needs it)."""
    t = torch.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x.pow(3)))
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * x.pow(2))
    ddu = _SQRT_2_OVER_PI * 6.0 * _GELU_C * x
    return (1.0 - t * t) * (du + 0.5 * x * (ddu - 2.0 * t * du * du))
