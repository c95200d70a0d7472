"""Video metrics in pure torch: MSE per frame, PSNR, SSIM (prediction), top-k accuracy (classes).

Letters: ``B`` batch, ``F`` frames, ``C`` channels, ``H`` height, ``W`` width, ``K`` classes.

Frames are floats in [0, 1]. "MSE per frame" follows the Moving MNIST protocol: the squared error
summed over the pixels of a frame, averaged over frames (and sequences).

Published tables (SimVP, PredRNN and the rest as benchmarked by OpenSTL, ``openstl/core/metrics.py``)
compute MSE and MAE per frame as here, but SSIM and PSNR differently, so ``openstl_ssim`` and
``openstl_psnr`` reproduce their definitions, to be read beside ours:

- the prediction is clipped to [0, 1] (the target is not), no rounding to 8 bits;
- SSIM is scikit-image's ``structural_similarity`` with its defaults: a 7 x 7 uniform window
  (only windows inside the frame), sample (co)variances (``49 / 48`` times ours), per channel
  then averaged, and, the images being floats, scikit-image's float data range of 2 (its
  ``dtype_range`` is [-1, 1]) in the constants ``(0.01 R)^2`` and ``(0.03 R)^2``; ours is
  the Gaussian-window SSIM (11 x 11, sigma 1.5) with data range 1;
- PSNR is ``-10 log10(MSE)`` per frame, infinite for a perfect frame (ours adds ``1e-10``
  to the MSE, capping it at 100 dB);
- both are averaged over every (sequence, frame).
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


def openstl_ssim(pred: Tensor, target: Tensor, data_range: float = 2.0) -> Tensor:
    """``[B, F, C, H, W]`` x2 -> ``[B, F]``: SSIM as OpenSTL reports it (module docstring).

    Prediction clipped to [0, 1]; 7 x 7 uniform windows inside the frame, sample
    (co)variances, ``C1 = (0.01 data_range)^2``, ``C2 = (0.03 data_range)^2``, in float64
    (512 frames at a time); the mean over windows and channels. Frames need sides of at
    least 7.
    """
    _check_pair(pred, target)
    B, Fr, C, H, W = pred.shape
    if min(H, W) < 7:
        raise ValueError(f"openstl_ssim: frames of {H}x{W} are smaller than its 7x7 window")
    x, y = pred.clamp(0, 1).reshape(B * Fr, C, H, W), target.reshape(B * Fr, C, H, W)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def mean(t: Tensor) -> Tensor:
        return F.avg_pool2d(t, 7, stride=1)

    def frame_ssim(x: Tensor, y: Tensor) -> Tensor:
        x, y = x.double(), y.double()
        mx, my = mean(x), mean(y)
        n = 49 / 48
        sxx, syy = n * (mean(x * x) - mx**2), n * (mean(y * y) - my**2)
        sxy = n * (mean(x * y) - mx * my)
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
        return s.flatten(1).mean(-1)

    chunk = 512
    parts = [frame_ssim(x[i : i + chunk], y[i : i + chunk]) for i in range(0, B * Fr, chunk)]
    return torch.cat(parts).view(B, Fr)


def openstl_psnr(pred: Tensor, target: Tensor) -> Tensor:
    """``[B, F, C, H, W]`` x2 -> ``[B, F]``: ``-10 log10(MSE)`` of each frame, prediction
    clipped to [0, 1]; ``inf`` where the frame is exact (as OpenSTL reports it)."""
    _check_pair(pred, target)
    mse = (pred.float().clamp(0, 1) - target.float()).pow(2).flatten(2).mean(-1)
    return -10 * torch.log10(mse)


def frame_metrics(pred: Tensor, target: Tensor, openstl: bool = False) -> dict[str, float]:
    """Means over ``[B, F, C, H, W]`` of MSE/MAE per frame, PSNR and SSIM (preds clamped).

    ``openstl``: also ``ssim_openstl`` and ``psnr_openstl``, the definitions of published
    tables (see the module docstring).
    """
    pred = pred.clamp(0, 1)
    metrics = {
        "mse": mse_per_frame(pred, target).mean().item(),
        "mae": mae_per_frame(pred, target).mean().item(),
        "psnr": psnr(pred, target).mean().item(),
        "ssim": ssim(pred, target).mean().item(),
    }
    if openstl:
        metrics["ssim_openstl"] = openstl_ssim(pred, target).mean().item()
        metrics["psnr_openstl"] = openstl_psnr(pred, target).mean().item()
    return metrics


def topk_accuracy(logits: Tensor, labels: Tensor, k: int = 1) -> Tensor:
    """``logits [B, K]``, ``labels [B]`` -> fraction of rows whose label is in the top ``k``."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"logits/labels: expected [B, K] and [B], got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).float().mean()
