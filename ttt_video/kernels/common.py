"""Pieces shared by the PyTorch forms of the TTT computation (``naive``, ``dual``, ``decode``),
the Triton wrappers and the layers:

- the inner LayerNorm: ``LN_EPS``, ``layer_norm``, ``ln_stats``;
- its closed-form gradient (kernels/README.md section 2): ``ln_l2_grad``, and ``ln_backward``,
  which the custom backward of the dual form reuses for the adjoint;
- gelu_tanh and its derivatives: ``gelu_tanh``, ``gelu_tanh_vjp``, ``gelu_tanh_grad2``;
- the norm-keeping commit (``keep_inner_norm``, kernels/README.md section 15): ``pair_sq_norm``,
  ``rescale_to_norm``;
- ``without_autocast``: keeps a form's inner state in float32 inside a mixed-precision region.

The argument checks of the public entry points are in ``api.py``.

Letters: ``H`` heads, ``d`` head dim, ``...`` any leading dimensions. LayerNorm is always over
the last dimension (``d``).
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

LN_EPS = 1e-6
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


def without_autocast(fn):
    """Run ``fn`` with autocast off on every device type: the TTT forms keep their inner
    state in (at least) float32 and cast their output back to the input dtype themselves,
    so a surrounding ``bf16-mixed`` region must not re-type their matmuls."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        devices = [d for d in ("cpu", "cuda") if torch.is_autocast_enabled(d)]
        if not devices:  # the common case, without the cost of a context manager
            return fn(*args, **kwargs)
        with contextlib.ExitStack() as stack:
            for device in devices:
                stack.enter_context(torch.autocast(device, enabled=False))
            return fn(*args, **kwargs)

    return wrapper


def autograd_records(tensors) -> bool:
    """Whether autograd records a call on ``tensors`` (grad mode on, one of them requires a
    gradient): a training call rather than inference."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = LN_EPS) -> Tensor:
    """Per-head LayerNorm over the last dim, fused: ``x: [..., d]``, ``weight, bias``
    broadcastable to ``x`` (``[H, d]`` for ``[B, T, H, d]``)."""
    return F.layer_norm(x, (x.shape[-1],), eps=eps) * weight + bias


def ln_stats(z: Tensor, eps: float = LN_EPS) -> tuple[Tensor, Tensor, Tensor]:
    """Return ``(xh, mean, rstd)`` of ``z: [..., d]``: normalised ``z`` and the statistics
    ``mean, rstd = 1 / sqrt(var + eps)`` (``[..., 1]``), in one fused op."""
    return torch.native_layer_norm(z, [z.shape[-1]], None, None, eps)


def ln_l2_grad(z: Tensor, target: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Closed-form ``dl/dz`` of ``l = 1/2 ||LN(z) - target||^2`` (kernels/README.md section 2).

    ``z, target: [..., d]``; ``weight, bias`` broadcast to them. Returns ``[..., d]``.
    """
    xh, mean, rstd = ln_stats(z)
    gy = weight * (weight * xh + bias - target)
    return ln_backward(gy, z, mean, rstd)


def ln_backward(gy: Tensor, z: Tensor, mean: Tensor, rstd: Tensor) -> Tensor:
    """Back-propagate ``gy = dl/dxh`` through ``xh = (z - mean) * rstd``: returns ``dl/dz``,
    ``(gy - mean(gy) - xh mean(gy o xh)) * rstd``, in one fused op.

    The Jacobian of the normalisation is symmetric, so this also maps an adjoint ``dG`` of
    ``G = J gy`` to ``dgy = J dG`` in the custom backward of the dual form.
    """
    mask = [True, False, False]
    return torch.ops.aten.native_layer_norm_backward(
        gy, z, [z.shape[-1]], mean, rstd, None, None, mask
    )[0]


# tanh(u) = 2 sigmoid(2 u) - 1, so gelu_tanh(x) = x/2 (1 + tanh(u)) is x sigmoid(v) with
# v = 2 u = A x + B x^3: the same function through one sigmoid. On a CPU that is 1.6x faster
# than aten's gelu(approximate="tanh") in eager mode and 2.8x under torch.compile, whose
# vectorised tanh is slow (TTT-MLP's chain, [32, 16, 128]: benchmarks/call_overhead.md).
_GELU_A = 2.0 * _SQRT_2_OVER_PI
_GELU_B = _GELU_A * _GELU_C


def _gelu_gate(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(sigmoid(v), dv/dx)`` with ``v = A x + B x^3``."""
    x2 = x * x
    return torch.sigmoid(x * (_GELU_A + _GELU_B * x2)), _GELU_A + (3.0 * _GELU_B) * x2


def gelu_tanh(x: Tensor) -> Tensor:
    """The tanh approximation of GELU used by the paper's inner MLP:
    ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, computed as ``x sigmoid(2 u)``."""
    return x * torch.sigmoid(x * (_GELU_A + _GELU_B * (x * x)))


def gelu_tanh_vjp(grad: Tensor, x: Tensor) -> Tensor:
    """``grad * gelu_tanh'(x)``, with ``gelu_tanh' = s + x s (1 - s) v'`` (``s = sigmoid(v)``).

    Eager: aten's fused kernel, one pass (faster than the five ops of the sigmoid form);
    compiled: the sigmoid form, which inductor fuses into one loop without its slow tanh."""
    if not torch.compiler.is_compiling():
        return torch.ops.aten.gelu_backward(grad, x, approximate="tanh")
    s, dv = _gelu_gate(x)
    return grad * (s + x * s * (1.0 - s) * dv)


def gelu_tanh_grad2(x: Tensor) -> Tensor:
    """``d^2 gelu_tanh / dx^2`` (the custom backward of TTT-MLP needs it):
    ``s (1 - s) (2 v' + x ((1 - 2 s) v'^2 + v''))`` with ``s = sigmoid(v)``, ``v'' = 6 B x``."""
    s, dv = _gelu_gate(x)
    return s * (1.0 - s) * (2.0 * dv + x * ((1.0 - 2.0 * s) * dv * dv + (6.0 * _GELU_B) * x))


def pair_sq_norm(w: Tensor, c: Tensor) -> Tensor:
    """Squared Frobenius norm of the pair ``(w, c)`` of one inner layer, per leading index:
    ``w: [..., d_l, d_{l+1}]``, ``c: [..., d_{l+1}]`` -> ``[...]`` float64.

    The norms of the rows are taken in the tensors' dtype and their squares summed in float64:
    float32 sums over whole matrices biased the kept norm (TTT-MLP's ``(W1, b1)``: about
    ``-1.3e-8`` per commit, adding up to ``-2e-4`` after 16,000 commits at d = 16), and
    converting the matrices to float64 first cost as much as the commit's products (b = 16).
    """
    vn = torch.linalg.vector_norm
    return vn(w, dim=-1).double().square().sum(-1) + vn(c, dim=-1).double().square()


def rescale_to_norm(
    w_old: Tensor, c_old: Tensor, w_new: Tensor, c_new: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Scale the committed pair ``(w_new, c_new)`` jointly to the norm of ``(w_old, c_old)``.

    ``w: [..., d_l, d_{l+1}]``, ``c: [..., d_{l+1}]``. Returns ``(r w_new, r c_new, r)`` with
    ``r = ||(w_old, c_old)|| / ||(w_new, c_new)||: [...]`` in the dtype of ``w_new`` (the
    squared norms are floored at the smallest normal number, so that a zero pair stays zero
    instead of becoming NaN).
    """
    tiny = torch.finfo(w_new.dtype).tiny
    ratio = pair_sq_norm(w_old, c_old) / pair_sq_norm(w_new, c_new).clamp_min(tiny)
    r = ratio.sqrt().to(w_new.dtype)
    return r[..., None, None] * w_new, r[..., None] * c_new, r
