"""``video_metrics.ssim`` (Gaussian window): the values of the previous implementation (an
11 x 11 convolution over every frame at once) and of a window-by-window reference, per frame
whatever the batch, and in bounded memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ttt_video.train.video_metrics import _gaussian, ssim

CLEAR_REFS = Path("/proc/self/clear_refs")


def previous_ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11) -> torch.Tensor:
    """The implementation this one replaced: one ``size x size`` Gaussian kernel (sigma 1.5)
    convolved over all ``B * F`` frames at once, float32. ``[B, F, C, H, W]`` -> ``[B, F]``."""
    B, Fr, C, H, W = pred.shape
    size = min(window, H, W)
    g = _gaussian(size, 1.5, pred.device, torch.float32)
    kernel = (g[:, None] * g[None, :]).expand(C, 1, size, size)
    x, y = (t.float().reshape(B * Fr, C, H, W) for t in (pred, target))

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=C)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(-1).view(B, Fr)


def window_by_window(x: np.ndarray, y: np.ndarray, window: int = 11) -> float:
    """Every ``k x k`` window inside ``[C, H, W]`` frames (``k = min(window, H, W)``), weighted
    by the Gaussian (sigma 1.5): weighted means, variances and covariance; the mean SSIM over
    windows and channels, in float64."""
    C, H, W = x.shape
    k = min(window, H, W)
    g = np.exp(-((np.arange(k) - (k - 1) / 2) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / g.sum() ** 2
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(C):
        for i in range(H - k + 1):
            for j in range(W - k + 1):
                a, b = x[c, i : i + k, j : j + k], y[c, i : i + k, j : j + k]
                ma, mb = (w * a).sum(), (w * b).sum()
                va, vb = (w * a * a).sum() - ma**2, (w * b * b).sum() - mb**2
                cov = (w * a * b).sum() - ma * mb
                values.append(
                    ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
                )
    return float(np.mean(values))


def sparse_frames(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Frames in [0, 1] that are mostly black, as Moving MNIST's are."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g).sub(0.7).clamp(min=0) / 0.3


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 1, 64, 64), (1, 2, 3, 20, 24), (2, 2, 1, 8, 9)],
    ids=["moving-mnist", "rgb-non-square", "smaller-than-window"],
)
def test_ssim_keeps_the_previous_values(shape):
    target = sparse_frames(shape, 0)
    g = torch.Generator().manual_seed(1)
    cases = {
        "noisy": (target + 0.2 * torch.randn(shape, generator=g)).clamp(0, 1),
        "blurred": F.avg_pool2d(target.flatten(0, 2), 3, 1, 1).view(shape),
        "shifted": target.roll(3, dims=-1),
        "zeros": torch.zeros(shape),
        "same": target,
    }
    for name, pred in cases.items():
        got, want = ssim(pred, target), previous_ssim(pred, target)
        assert got.shape == want.shape and got.dtype == torch.float32, name
        assert torch.allclose(got, want, rtol=0, atol=1e-6), name


def test_ssim_matches_the_window_by_window_reference():
    target = sparse_frames((1, 2, 2, 14, 13), 2)
    pred = (target + 0.3 * torch.rand(target.shape)).clamp(0, 1)
    got = ssim(pred, target)
    for f in range(2):
        want = window_by_window(pred[0, f].double().numpy(), target[0, f].double().numpy())
        assert got[0, f].item() == pytest.approx(want, abs=1e-6)


def test_ssim_is_per_frame_whatever_the_batch():
    """A frame's value does not depend on the frames computed with it (the quickstart scores
    its test set batch by batch)."""
    x, y = sparse_frames((3, 50, 1, 64, 64), 3), sparse_frames((3, 50, 1, 64, 64), 4)
    whole = ssim(x, y)
    assert torch.equal(whole[1:, 7:], ssim(x[1:, 7:], y[1:, 7:]))
    assert torch.equal(whole[2:, 49:], ssim(x[2:, 49:], y[2:, 49:]))


def peak_rss_growth(run) -> int:
    """Bytes over the resident memory at the start that ``run()`` reached at its peak (the
    kernel's mark, reset first through ``/proc/self/clear_refs``)."""

    def status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {key} in /proc/self/status")

    CLEAR_REFS.write_text("5")
    start = status("VmRSS:")
    run()
    return status("VmHWM:") - start


@pytest.mark.skipif(not CLEAR_REFS.exists(), reason="needs Linux /proc/self/clear_refs")
def test_ssim_memory_does_not_grow_with_the_frames():
    """4,000 frames (64 MiB per input): the intermediate maps of all frames at once take 15
    times that (the previous implementation: about 1 GB); a few frames at a time, a few MiB.
    Measured on a second call: the first one also grows the allocator's heap once."""
    x, y = sparse_frames((40, 100, 1, 64, 64), 5), sparse_frames((40, 100, 1, 64, 64), 6)
    ssim(x, y)
    assert peak_rss_growth(lambda: ssim(x, y)) < 2 * x.nbytes
