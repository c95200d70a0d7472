"""Device functions shared by the Triton kernels: matrix products in the input dtype, the
inner LayerNorm's closed-form gradient and its adjoint, gelu_tanh and its derivatives.

Letters: ``BS`` block rows (the mini-batch size ``b``), ``BD`` block columns (the head dim
``d`` rounded up to a power of two; columns ``>= D`` are padding and masked by ``cm``),
``D`` the true head dim. Every block here is fp32 unless said otherwise.
"""

import triton
import triton.language as tl

SQRT_2_OVER_PI = tl.constexpr(0.7978845608028654)
GELU_C = tl.constexpr(0.044715)


# Triton 3.8's interpreter returns garbage for tl.dot on bf16 blocks; there the operands are
# rounded to bf16 and multiplied in fp32, which gives the same products (exact in fp32).
INTERPRETED = tl.constexpr(triton.knobs.runtime.interpret)


@triton.jit
def dot(a, b, DT: tl.constexpr):
    """``a @ b`` with both operands cast to the input dtype ``DT`` and an fp32 accumulator."""
    if INTERPRETED and DT == tl.bfloat16:
        return tl.dot(a.to(DT).to(tl.float32), b.to(DT).to(tl.float32), input_precision="ieee")
    # ieee: fp32 inputs must not be silently rounded to tf32 on Ampere+.
    return tl.dot(a.to(DT), b.to(DT), input_precision="ieee")


@triton.jit
def ln_jvp(a, xh, rstd, cm, D):
    """``J a`` for the symmetric Jacobian ``J`` of the normalisation: ``[BS, BD]``.

    ``(a - mean(a) - xh mean(a o xh)) * rstd``, means over the ``D`` real columns.
    """
    ma = tl.sum(a, 1) / D  # [BS]
    mx = tl.sum(a * xh, 1) / D  # [BS]
    out = (a - ma[:, None] - xh * mx[:, None]) * rstd[:, None]
    return tl.where(cm[None, :], out, 0.0)  # padded columns stay exactly zero


@triton.jit
def inner_grad(z, tgt, lnw, lnb, cm, D, eps):
    """LayerNorm statistics of ``z: [BS, BD]`` and ``G = dl/dz`` of ``1/2 ||LN(z) - tgt||^2``.

    ``z`` is zero on padded columns, ``lnw, lnb: [BD]`` are zero there. Returns
    ``(xh, rstd, gy, G)`` with ``gy = lnw o (lnw o xh + lnb - tgt) = dl/dxh``.
    """
    mu = tl.sum(z, 1) / D  # [BS]
    zc = tl.where(cm[None, :], z - mu[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(zc * zc, 1) / D + eps)  # [BS]
    xh = zc * rstd[:, None]
    gy = lnw[None, :] * (lnw[None, :] * xh + lnb[None, :] - tgt)
    return xh, rstd, gy, ln_jvp(gy, xh, rstd, cm, D)


@triton.jit
def inner_grad_backward(a, xh, rstd, gy, G, tgt, lnw, lnb, cm, D):
    """Adjoint through ``G = J(z) gy`` given ``a = dG: [BS, BD]``.

    Returns ``(dz, dtgt, dlnw_part, dlnb_part)``; the last two are summed over rows
    (``[BD]``). ``J`` is symmetric, so ``dgy = J a``; ``J`` depends on ``z`` through ``xh``
    and ``s = 1 / rstd`` (derivation: kernels/README.md section 4).
    """
    dgy = ln_jvp(a, xh, rstd, cm, D)
    dtgt = -lnw[None, :] * dgy
    dlnw = tl.sum(dgy * (2.0 * lnw[None, :] * xh + lnb[None, :] - tgt), 0)
    dlnb = tl.sum(dgy * lnw[None, :], 0)
    mgx = tl.sum(gy * xh, 1) / D  # [BS]
    max_ = tl.sum(a * xh, 1) / D  # [BS]
    dxh = dgy * (lnw * lnw)[None, :] - (a * mgx[:, None] + gy * max_[:, None]) * rstd[:, None]
    ds = -tl.sum(a * G, 1) * rstd  # [BS] adjoint of s = 1 / rstd
    dz = ln_jvp(dxh, xh, rstd, cm, D) + ds[:, None] * xh / D
    return dz, dtgt, dlnw, dlnb


@triton.jit
def gelu(x):
    """gelu_tanh, its first and its second derivative (fp32)."""
    u = SQRT_2_OVER_PI * (x + GELU_C * x * x * x)
    t = 2.0 / (1.0 + tl.exp(-2.0 * u)) - 1.0  # tanh(u); tl has no tanh on every backend
    du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x)
    ddu = SQRT_2_OVER_PI * 6.0 * GELU_C * x
    g = 0.5 * x * (1.0 + t)
    g1 = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
    g2 = (1.0 - t * t) * (du + 0.5 * x * (ddu - 2.0 * t * du * du))
    return g, g1, g2


@triton.jit
def sequence_span(cu_blk_ptr, cu_ck_ptr, commit_ptr, s):
    """Mini-batches ``[n0, n1)`` of sequence ``s``, its first saved state and commit flag."""
    n0 = tl.load(cu_blk_ptr + s)
    n1 = tl.load(cu_blk_ptr + s + 1)
    return n0, n1, tl.load(cu_ck_ptr + s), tl.load(commit_ptr + s)


@triton.jit
def head_constants(tau_ptr, lnw_ptr, lnb_ptr, h, D, causal, BS: tl.constexpr, BD: tl.constexpr):
    """Index vectors, masks and the per-head constants every chain kernel starts with.

    Returns ``ri: [BS]``, ``rd: [BD]``, ``cm: [BD]`` real columns, ``xm: [BS, BD]`` token
    block mask, ``tau: [BS]``, ``t_last = tau[BS-1]``, ``lnw, lnb: [BD]`` (zero on padding)
    and ``vis: [BS, BS]``, query ``i`` sees token ``j``: ``j <= i`` when ``causal`` (a
    runtime 0/1, not a compile-time flag: one compiled kernel serves both), else always.
    """
    ri = tl.arange(0, BS)
    rd = tl.arange(0, BD)
    cm = rd < D
    xm = (ri[:, None] >= 0) & cm[None, :]
    tau = tl.load(tau_ptr + ri)
    t_last = tl.load(tau_ptr + BS - 1)
    lnw = tl.load(lnw_ptr + h * D + rd, mask=cm, other=0.0)
    lnb = tl.load(lnb_ptr + h * D + rd, mask=cm, other=0.0)
    vis = (ri[:, None] >= ri[None, :]) | (causal == 0)
    return ri, rd, cm, xm, tau, t_last, lnw, lnb, vis


@triton.jit
def load_block(k_ptr, v_ptr, lam_ptr, h, n, NT, D, ri, rd, xm, BS: tl.constexpr):
    """Mini-batch ``n`` of head ``h``: offsets ``toff: [BS, BD]``, ``K: [BS, BD]`` (input
    dtype), ``lam: [BS]`` and the target ``V - K`` (fp32). The kernels load ``Q`` at
    ``toff`` where they first need it, which keeps its shared-memory copy short-lived."""
    toff = h * NT * D + (n * BS + ri)[:, None] * D + rd[None, :]
    kb = tl.load(k_ptr + toff, mask=xm, other=0.0)
    vb = tl.load(v_ptr + toff, mask=xm, other=0.0)
    lam = tl.load(lam_ptr + h * NT + n * BS + ri)
    return toff, kb, lam, vb.to(tl.float32) - kb.to(tl.float32)


@triton.jit
def masked_lr(tau, lam, vis):
    """``M[i, j] = tau_i lam_j`` where query ``i`` sees token ``j`` (``vis``), else 0."""
    return tl.where(vis, tau[:, None] * lam[None, :], 0.0)


@triton.jit
def dot_from_memory(
    x_ptr, xr, w_ptr, ws, wr, wm, D, BD: tl.constexpr, KC: tl.constexpr, DT: tl.constexpr
):
    """``X W`` with both operands read from global memory in chunks of ``KC`` along the
    contraction (the head dim ``D`` in a ``BD`` block, rows past ``D`` masked): the product
    stages a ``[R, KC]`` and a ``[KC, N]`` operand at a time instead of ``[R, BD]`` and
    ``[BD, N]``, and only while it runs (fp32, ``[64, 128] x [128, 128]``: 48 KB, not 96).

    ``X: [R, D]``, element ``(i, k)`` at ``x_ptr + xr[i] + k``; ``W: [D, N]``, element
    ``(k, j)`` at ``w_ptr + k * ws + wr[j]`` (``ws = 1`` reads a row-major ``W^T``); ``wm: [N]``
    masks the output columns. Returns ``[R, N]`` fp32.
    """
    rk = tl.arange(0, KC)
    acc = tl.zeros((xr.shape[0], wr.shape[0]), dtype=tl.float32)
    for c0 in tl.static_range(0, BD, KC):
        kc = c0 + rk
        km = kc < D
        x = tl.load(x_ptr + xr[:, None] + kc[None, :], mask=km[None, :], other=0.0)
        w = tl.load(
            w_ptr + kc[:, None] * ws + wr[None, :], mask=km[:, None] & wm[None, :], other=0.0
        )
        acc += dot(x, w, DT)
    return acc
