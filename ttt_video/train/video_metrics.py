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


def _valid_band(n: int, kernel: Tensor) -> Tensor:
    """``[n, n - k + 1]`` matrix ``M`` with ``(v @ M)[j] = sum_i kernel[i] v[j + i]``: the valid
    correlation of rows ``v [n]`` with ``kernel [k]`` as one matrix product."""
    k = kernel.numel()
    offset = torch.arange(n, device=kernel.device)[:, None] - torch.arange(
        n - k + 1, device=kernel.device
    )
    inside = (offset >= 0) & (offset < k)
    return torch.where(inside, kernel[offset.clamp(0, k - 1)], 0)


def _mean_ssim(
    pred: Tensor,
    target: Tensor,
    kernel: Tensor,
    c1: float,
    c2: float,
    cov_scale: float = 1.0,
    clip: bool = False,
    chunk: int = 64,
) -> Tensor:
    """``[B, F, C, H, W]`` x2 -> ``[B, F]``: the SSIM map of each frame, averaged over its
    channels and valid window positions.

    The window's weights are ``kernel [k]`` times itself (separable), applied as two matrix
    products per map (``_valid_band``); the local means, variances and covariance are taken
    under it, the (co)variances times ``cov_scale``; ``clip``: the prediction clipped to
    [0, 1] first. Computed in ``kernel``'s dtype, about ``chunk`` frames at a time (whole
    sequences), so the intermediate maps stay small whatever ``B``.
    """
    B, Fr, C, H, W = pred.shape
    rows, cols = _valid_band(H, kernel), _valid_band(W, kernel)  # [H, H'], [W, W']
    step = max(1, chunk // max(Fr, 1))
    # filled in place: small tensors kept from every chunk, between the large short-lived
    # ones, would fragment the heap (glibc), which then grows with B
    out = torch.empty(B, Fr, dtype=kernel.dtype, device=pred.device)
    for i in range(0, B, step):
        a, b = (t[i : i + step].reshape(-1, C, H, W).to(kernel.dtype) for t in (pred, target))
        if clip:
            a = a.clamp(0, 1)
        maps = torch.stack((a, b, a * a, b * b, a * b))  # [5, n, C, H, W]
        # along W, then along H: the maps come out transposed, [5, n, C, W', H'], which the
        # mean over window positions ignores
        mx, my, mxx, myy, mxy = (maps @ cols).transpose(-1, -2) @ rows
        sxx, syy = cov_scale * (mxx - mx**2), cov_scale * (myy - my**2)
        sxy = cov_scale * (mxy - mx * my)
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
        out[i : i + step] = s.flatten(1).mean(-1).view(-1, Fr)
    return out


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """``[B, F, C, H, W]`` x2 -> ``[B, F]``: structural similarity with a Gaussian window.

    The usual constants (``K1 = 0.01``, ``K2 = 0.03``, data range 1), valid convolution, averaged
    over pixels and channels, in float32; the window shrinks to the frame for frames smaller
    than it.
    """
    _check_pair(pred, target)
    H, W = pred.shape[-2:]
    g = _gaussian(min(window, H, W), sigma, pred.device, torch.float32)
    return _mean_ssim(pred, target, g, 0.01**2, 0.03**2)


def openstl_ssim(pred: Tensor, target: Tensor, data_range: float = 2.0) -> Tensor:
    """``[B, F, C, H, W]`` x2 -> ``[B, F]``: SSIM as OpenSTL reports it (module docstring).

    Prediction clipped to [0, 1]; 7 x 7 uniform windows inside the frame, sample
    (co)variances, ``C1 = (0.01 data_range)^2``, ``C2 = (0.03 data_range)^2``, in float64;
    the mean over windows and channels. Frames need sides of at least 7.
    """
    _check_pair(pred, target)
    H, W = pred.shape[-2:]
    if min(H, W) < 7:
        raise ValueError(f"openstl_ssim: frames of {H}x{W} are smaller than its 7x7 window")
    box = torch.full((7,), 1 / 7, dtype=torch.float64, device=pred.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return _mean_ssim(pred, target, box, c1, c2, cov_scale=49 / 48, clip=True)


def openstl_psnr(pred: Tensor, target: Tensor) -> Tensor:
    """``[B, F, C, H, W]`` x2 -> ``[B, F]``: ``-10 log10(MSE)`` of each frame, prediction
    clipped to [0, 1]; ``inf`` where the frame is exact (as OpenSTL reports it)."""
    _check_pair(pred, target)
    mse = (pred.float().clamp(0, 1) - target.float()).pow(2).flatten(2).mean(-1)
    return -10 * torch.log10(mse)


def metrics_per_frame(pred: Tensor, target: Tensor, openstl: bool = False) -> dict[str, Tensor]:
    """``[B, F, C, H, W]`` x2 -> ``{name: [B, F]}``: MSE and MAE per frame, PSNR and SSIM of
    each frame, the prediction clamped to [0, 1].

    ``openstl``: also ``ssim_openstl`` and ``psnr_openstl``, the definitions of published
    tables (see the module docstring). Every value is the frame's own, so the values of a
    set computed batch by batch are those of the whole set at once.
    """
    pred = pred.clamp(0, 1)
    metrics = {
        "mse": mse_per_frame(pred, target),
        "mae": mae_per_frame(pred, target),
        "psnr": psnr(pred, target),
        "ssim": ssim(pred, target),
    }
    if openstl:
        metrics["ssim_openstl"] = openstl_ssim(pred, target)
        metrics["psnr_openstl"] = openstl_psnr(pred, target)
    return metrics


def frame_metrics(pred: Tensor, target: Tensor, openstl: bool = False) -> dict[str, float]:
    """Means over ``[B, F, C, H, W]`` of ``metrics_per_frame`` (MSE/MAE per frame, PSNR and
    SSIM; with ``openstl`` also ``ssim_openstl`` and ``psnr_openstl``)."""
    return {k: v.mean().item() for k, v in metrics_per_frame(pred, target, openstl).items()}


def topk_accuracy(logits: Tensor, labels: Tensor, k: int = 1) -> Tensor:
    """``logits [B, K]``, ``labels [B]`` -> fraction of rows whose label is in the top ``k``."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"logits/labels: expected [B, K] and [B], got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).float().mean()
