"""Video metrics in pure torch: MSE per frame, PSNR, SSIM (prediction), top-k accuracy (classes).

Letters: ``B`` batch, ``F`` frames, ``C`` channels, ``H`` height, ``W`` width, ``K`` classes.

Frames are floats in [0, 1]. "MSE per frame" follows the Moving MNIST protocol: the squared error
summed over the pixels of a frame, averaged over frames (and sequences).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 5:
        raise ValueError(
            f"pred/target: expected equal [B, F, C, H, W], got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


def mse_per_frame(pred: Tensor, target: Tensor) -> Tensor:
    """``[B, F, C, H, W]`` x2 -> ``[B, F]``: squared error summed over each frame's pixels."""
    _check_pair(pred, target)
    return (pred.float() - target.float()).pow(2).flatten(2).sum(-1)


def mae_per_frame(pred: Tensor, target: Tensor) -> Tensor:
    """``[B, F, C, H, W]`` x2 -> ``[B, F]``: absolute error summed over each frame's pixels."""
    _check_pair(pred, target)
    return (pred.float() - target.float()).abs().flatten(2).sum(-1)


def psnr(pred: Tensor, target: Tensor, eps: float = 1e-10) -> Tensor:
    """``[B, F, C, H, W]`` x2 -> ``[B, F]``: ``10 log10(1 / mean squared error)`` per frame (dB)."""
    _check_pair(pred, target)
    mse = (pred.float() - target.float()).pow(2).flatten(2).mean(-1)
    return -10 * torch.log10(mse + eps)


def _gaussian(size: int, sigma: float, device, dtype) -> Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """``[B, F, C, H, W]`` x2 -> ``[B, F]``: structural similarity with a Gaussian window.

    The usual constants (``K1 = 0.01``, ``K2 = 0.03``, data range 1), valid convolution, averaged
    over pixels and channels; the window shrinks to the frame for frames smaller than it.
    """
    _check_pair(pred, target)
    B, Fr, C, H, W = pred.shape
    size = min(window, H, W)
    g = _gaussian(size, sigma, pred.device, torch.float32)
    kernel = (g[:, None] * g[None, :]).expand(C, 1, size, size)
    x, y = (t.float().reshape(B * Fr, C, H, W) for t in (pred, target))

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, kernel, groups=C)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(-1).view(B, Fr)


def frame_metrics(pred: Tensor, target: Tensor) -> dict[str, float]:
    """Means over ``[B, F, C, H, W]`` of MSE/MAE per frame, PSNR and SSIM (preds clamped)."""
    pred = pred.clamp(0, 1)
    return {
        "mse": mse_per_frame(pred, target).mean().item(),
        "mae": mae_per_frame(pred, target).mean().item(),
        "psnr": psnr(pred, target).mean().item(),
        "ssim": ssim(pred, target).mean().item(),
    }


def topk_accuracy(logits: Tensor, labels: Tensor, k: int = 1) -> Tensor:
    """``logits [B, K]``, ``labels [B]`` -> fraction of rows whose label is in the top ``k``."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"logits/labels: expected [B, K] and [B], got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).float().mean()
