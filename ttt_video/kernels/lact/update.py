"""The end-of-chunk update of the fast weights, shared by every form (kernels/README.md
section 13): momentum, Muon, the step and the row-norm rescaling.

Letters: ``...`` leading batch dimensions (``B, H``), ``o x i`` a fast-weight matrix stored
``[out, in]``.

For each of ``W1, W2, W3`` with the chunk's summed gradient ``g``::

    M <- beta M + g                 (momentum > 0; else M = g)
    U <- NewtonSchulz5(M)           (muon; else U = M)
    W <- rescale_rows(W - U, W)     (each row back to the norm it had before the step)

Which rule: the issue's. The authors' published minimal bidirectional layer appears to write
the orthogonalised gradient over the weights before adding the raw gradient, which drops the
old weights; this library steps from the old weights as written above.
"""

from __future__ import annotations

from torch import Tensor

from ttt_video.kernels.lact.state import Matrices

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
"""``(a, b, c)`` of the quintic ``p(s) = a s + b s^3 + c s^5`` the Newton-Schulz iteration
applies to every singular value (the coefficients of the Muon optimiser)."""
NS_STEPS = 5
NORM_EPS = 1e-7
"""Floor of the norms divided by (Frobenius norm before Newton-Schulz, row norms)."""


def newton_schulz5(g: Tensor, steps: int = NS_STEPS) -> Tensor:
    """Approximately orthogonalise ``g: [..., o, i]`` (Muon): ``U p^steps(S) V^T`` for the SVD
    ``g / ||g||_F = U S V^T``, computed with matrix products only.

    The Frobenius normalisation puts every singular value in ``[0, 1]``; five steps of ``p``
    bring those not too close to 0 into roughly ``[0.7, 1.2]``. Same dtype as ``g``.
    """
    a, b, c = NS_COEFFICIENTS
    x = g / g.norm(dim=(-2, -1), keepdim=True).clamp_min(NORM_EPS)
    wide = x.shape[-2] <= x.shape[-1]
    if not wide:  # iterate on the smaller Gram matrix
        x = x.transpose(-2, -1)
    for _ in range(steps):
        gram = x @ x.transpose(-2, -1)
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x if wide else x.transpose(-2, -1)


def rescale_rows(w_new: Tensor, w_old: Tensor) -> Tensor:
    """``w_new`` with each row (``[..., o, :]``) scaled to the norm of that row of ``w_old``."""
    norm_old = w_old.norm(dim=-1, keepdim=True)
    return w_new * (norm_old / w_new.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS))


def commit(
    weights: Matrices, grads: Matrices, momentum: Matrices | None, beta: float, muon: bool
) -> tuple[Matrices, Matrices | None]:
    """Apply one chunk's update (module docstring) to ``(W1, W2, W3)``.

    Args:
        weights: the fast weights at the chunk start.
        grads: ``sum_j eta_j grad_W l_j`` over the chunk, per matrix.
        momentum: the momentum buffers (None when ``beta == 0``).
        beta: momentum coefficient in ``[0, 1)``.
        muon: orthogonalise the step by ``newton_schulz5``.

    Returns:
        the new weights and the new momentum buffers (None when ``momentum`` is None).
    """
    new_w, new_m = [], []
    for i, (w, g) in enumerate(zip(weights, grads)):
        step = g
        if momentum is not None:
            step = beta * momentum[i] + g
            new_m.append(step)
        if muon:
            step = newton_schulz5(step)
        new_w.append(rescale_rows(w - step, w))
    return tuple(new_w), (tuple(new_m) if momentum is not None else None)
