"""The one comparator the tests and benchmarks use.

``assert_close(name, ref, out, tol)`` reports the max-abs error and the
relative RMS error ``rms(out - ref) / rms(ref)`` and fails when the relative
RMS error exceeds ``tol`` (or, for a reference that is all zeros, when the
max-abs error exceeds ``tol``).
"""

from __future__ import annotations

import torch

# Relative-RMS tolerances by dtype: what one rounding per op costs over a few hundred ops.
DTYPE_TOL = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
    torch.bfloat16: 2e-2,
    torch.float16: 4e-3,
}


def error_stats(ref: torch.Tensor, out: torch.Tensor) -> tuple[float, float]:
    """Return (max-abs error, relative RMS error) of ``out`` against ``ref``."""
    ref64 = ref.detach().to(torch.float64)
    diff = out.detach().to(torch.float64) - ref64
    max_abs = diff.abs().max().item() if diff.numel() else 0.0
    ref_rms = ref64.pow(2).mean().sqrt().item() if ref64.numel() else 0.0
    diff_rms = diff.pow(2).mean().sqrt().item() if diff.numel() else 0.0
    rel = diff_rms / ref_rms if ref_rms > 0 else diff_rms
    return max_abs, rel


def assert_close(name: str, ref: torch.Tensor, out: torch.Tensor, tol: float | None = None):
    """Assert ``out`` matches ``ref`` to relative RMS error ``tol`` (default: by ref's dtype)."""
    if ref.shape != out.shape:
        raise AssertionError(f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    if tol is None:
        tol = DTYPE_TOL.get(ref.dtype, 1e-5)
    if not torch.isfinite(out).all():
        raise AssertionError(f"{name}: output has non-finite values")
    max_abs, rel = error_stats(ref, out)
    if rel > tol:
        raise AssertionError(f"{name}: rel-RMS error {rel:.3e} > tol {tol:.1e} (max-abs {max_abs:.3e})")
