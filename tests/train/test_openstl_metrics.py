"""SSIM and PSNR as published tables (OpenSTL) compute them, on hand-computable cases and
against a window-by-window reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ttt_video.train.video_metrics import frame_metrics, openstl_psnr, openstl_ssim, psnr


def constant(value: float, shape=(1, 2, 1, 9, 9)) -> torch.Tensor:
    return torch.full(shape, value, dtype=torch.float64)


def reference_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 2.0) -> float:
    """Window by window: every 7x7 window inside ``[C, H, W]`` frames, sample (co)variances
    (ddof 1), averaged over windows and channels."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    C, H, W = x.shape
    for c in range(C):
        for i in range(H - 6):
            for j in range(W - 6):
                a, b = x[c, i : i + 7, j : j + 7].ravel(), y[c, i : i + 7, j : j + 7].ravel()
                cov = np.cov(a, b, ddof=1)
                num = (2 * a.mean() * b.mean() + c1) * (2 * cov[0, 1] + c2)
                den = (a.mean() ** 2 + b.mean() ** 2 + c1) * (cov[0, 0] + cov[1, 1] + c2)
                values.append(num / den)
    return float(np.mean(values))


def test_identical_frames():
    x = torch.rand(2, 3, 1, 16, 16)
    assert torch.allclose(openstl_ssim(x, x), torch.ones(2, 3, dtype=torch.float64))
    assert torch.isinf(openstl_psnr(x, x)).all()  # OpenSTL's perfect frame (ours caps it)
    assert psnr(x, x).max() == pytest.approx(100)


def test_constant_offset_has_the_textbook_values():
    pred, target = constant(0.35), constant(0.25)
    assert openstl_psnr(pred, target) == pytest.approx(torch.full((1, 2), 20.0), abs=1e-4)
    # flat frames: only the luminance term, with C1 = (0.01 * 2)^2 (float data range 2)
    c1 = 0.02**2
    expected = (2 * 0.35 * 0.25 + c1) / (0.35**2 + 0.25**2 + c1)
    assert openstl_ssim(pred, target)[0].tolist() == pytest.approx([expected] * 2, abs=1e-12)
    with_range_1 = (2 * 0.35 * 0.25 + 1e-4) / (0.35**2 + 0.25**2 + 1e-4)
    assert openstl_ssim(pred, target, data_range=1.0)[0, 0].item() == pytest.approx(with_range_1)
    assert with_range_1 != pytest.approx(expected)


def test_prediction_is_clipped_to_the_unit_range():
    pred, target = constant(1.5), constant(0.75)
    expected = -10 * math.log10(0.25**2)  # the prediction counts as 1.0
    assert openstl_psnr(pred, target)[0, 0].item() == pytest.approx(expected, abs=1e-4)
    assert openstl_ssim(pred, target)[0, 0].item() == pytest.approx(
        openstl_ssim(constant(1.0), target)[0, 0].item()
    )


def test_ssim_matches_the_window_by_window_reference():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(1, 2, 3, 9, 11, generator=g)
    pred = (target + 0.3 * torch.randn(1, 2, 3, 9, 11, generator=g)).clamp(0, 1)
    got = openstl_ssim(pred, target)
    for f in range(2):
        want = reference_ssim(pred[0, f].double().numpy(), target[0, f].double().numpy())
        assert got[0, f].item() == pytest.approx(want, abs=1e-12)


def test_ssim_is_per_frame_across_chunks():
    x, y = torch.rand(2, 300, 1, 8, 8), torch.rand(2, 300, 1, 8, 8)  # 600 frames: two chunks
    assert torch.equal(openstl_ssim(x, y)[:, 290:], openstl_ssim(x[:, 290:], y[:, 290:]))


def test_frame_metrics_add_them_on_request():
    x, y = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 3, 1, 16, 16)
    assert "ssim_openstl" not in frame_metrics(x, y)
    m = frame_metrics(x, y, openstl=True)
    assert m["ssim_openstl"] == pytest.approx(openstl_ssim(x, y).mean().item())
    assert m["psnr_openstl"] == pytest.approx(openstl_psnr(x, y).mean().item())
    with pytest.raises(ValueError, match="7x7 window"):
        openstl_ssim(torch.rand(1, 1, 1, 6, 6), torch.rand(1, 1, 1, 6, 6))
