"""Helpers shared by the tests, the benchmarks and ``ttt-video smoke``.

- Comparison: ``error_stats(ref, out)`` gives the max-abs and the relative RMS error
  ``rms(out - ref) / rms(ref)`` (the RMS of the difference when ``ref`` is all zeros);
  ``assert_close(name, ref, out, tol)`` fails, naming ``name``, on a shape mismatch, a
  non-finite output or a relative RMS error above ``tol`` (default ``DTYPE_TOL[ref.dtype]``).
- Kernel inputs: ``random_ttt_inputs(kind, B, T, H, d, b)`` gives a ``TTTInputs`` shaped and
  scaled like a trained layer's arguments, and ``run_ttt(kind, inputs, b, **kwargs)`` calls
  ``ttt_linear`` or ``ttt_mlp`` on it.

Letters: ``B`` batch, ``T`` tokens, ``H`` heads, ``d`` head dim, ``b`` mini-batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        raise AssertionError(
            f"{name}: rel-RMS error {rel:.3e} > tol {tol:.1e} (max-abs {max_abs:.3e})"
        )


@dataclass
class TTTInputs:
    """Random but well-conditioned arguments of ``ttt_linear`` / ``ttt_mlp``.

    Shapes: ``q, k, v: [B, T, H, d]``, ``lam: [B, T, H]``, ``tau: [b]``,
    ``weights``/``biases``: per inner layer ``[H, d_l, d_{l+1}]`` / ``[H, d_{l+1}]``,
    ``ln_weight, ln_bias: [H, d]``.
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    lam: torch.Tensor
    tau: torch.Tensor
    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    ln_weight: torch.Tensor
    ln_bias: torch.Tensor

    def tensors(self) -> list[torch.Tensor]:
        """Every differentiable input, in a fixed order."""
        return [
            self.q,
            self.k,
            self.v,
            self.lam,
            self.tau,
            *self.weights,
            *self.biases,
            self.ln_weight,
            self.ln_bias,
        ]

    def requires_grad_(self) -> TTTInputs:
        for t in self.tensors():
            t.requires_grad_(True)
        return self

    def to(self, device: torch.device | str, dtype: torch.dtype) -> TTTInputs:
        """Copies on ``device`` in ``dtype``, each a new leaf that needs a gradient."""

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(device, dtype)

        names = "q k v lam tau ln_weight ln_bias".split()
        return TTTInputs(
            **{n: move(getattr(self, n)) for n in names},
            weights=tuple(map(move, self.weights)),
            biases=tuple(map(move, self.biases)),
        ).requires_grad_()


def random_ttt_inputs(
    kind: str,
    B: int,
    T: int,
    H: int,
    d: int,
    b: int,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> TTTInputs:
    """Inputs shaped like a trained layer's: unit-scale views, ``lam ~ base_lr/d``."""
    if kind not in ("linear", "mlp"):
        raise ValueError(f"kind: expected 'linear' or 'mlp', got {kind!r}")
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    widths = [d, d] if kind == "linear" else [d, 4 * d, d]
    weights = tuple(rnd(H, i, o, scale=i**-0.5) for i, o in zip(widths[:-1], widths[1:]))
    biases = tuple(rnd(H, o, scale=0.1) for o in widths[1:])
    lam = (
        torch.rand(B, T, H, generator=g, dtype=torch.float64)
        * (2.0 if kind == "linear" else 0.2)
        / d
    )
    tau = (1.0 / torch.arange(1, b + 1, dtype=torch.float64) + rnd(b, scale=0.05).double()).clamp(
        min=0
    )
    return TTTInputs(
        q=rnd(B, T, H, d),
        k=rnd(B, T, H, d),
        v=rnd(B, T, H, d),
        lam=lam.to(dtype),
        tau=tau.to(dtype),
        weights=weights,
        biases=biases,
        ln_weight=1.0 + rnd(H, d, scale=0.1),
        ln_bias=rnd(H, d, scale=0.1),
    )


def run_ttt(kind: str, inp: TTTInputs, b: int, **kwargs):
    """Call ``ttt_linear`` or ``ttt_mlp`` (by ``kind``) on ``inp``; ``kwargs`` go to the kernel.

    With an ``initial_state`` in ``kwargs`` the inner weights come from it (``inp.weights``
    and ``inp.biases`` are not passed).
    """
    from ttt_video.kernels import ttt_linear, ttt_mlp

    fn = ttt_linear if kind == "linear" else ttt_mlp
    params = [t for pair in zip(inp.weights, inp.biases) for t in pair]
    if kwargs.get("initial_state") is not None:
        params = [None] * len(params)
    return fn(
        inp.q,
        inp.k,
        inp.v,
        inp.lam,
        inp.tau,
        *params,
        inp.ln_weight,
        inp.ln_bias,
        mini_batch_size=b,
        **kwargs,
    )
