"""Triton kernels of TTT-MLP's dual form: forward and backward of the state chain.

Letters: ``S`` sequences, ``H`` heads, ``D`` head dim (``BD`` its power-of-two block,
columns ``>= D`` masked), ``M`` hidden width (``4D``), ``BM`` hidden columns per tile,
``BS = b`` the mini-batch size, ``NT`` padded tokens, ``GROUP`` mini-batches between saved
states. One program per (sequence, head). The hidden state ``W1: [D, M]``, ``W2: [M, D]``,
``c1: [M]`` is too large for registers at ``D = 128``: it lives in fp32 global memory (the
final-state buffers, updated in place; L2-resident at these sizes) and every mini-batch
visits it in ``[BD, BM]`` / ``[BM, BD]`` tiles. ``c2, gc2: [BD]`` stay in registers.

Per mini-batch (kernels/README.md section 3, two inner layers)::

    pass A, per tile:  Z1 = K W1 + c1   X2 = gelu(Z1)   Z2 += X2 W2        -> G2 = dl/dZ2
    pass B, per tile:  G1 = (G2 W2^T) o gelu'(Z1)
                       Zb1 = Q W1 + c1 - (M o (Q K^T + 1)) G1   Xb2 = gelu(Zb1)
                       S2 += Xb2 X2^T   XbW2 += Xb2 W2   then commit the tile:
                       W1 -= f t (gW1 + K^T (lam o G1))   W2 -= f t (gW2 + X2^T (lam o G2))
    Zb2 = XbW2 + c2 - (M o (S2 + 1)) G2   (terms with gW only before the first commit)

Pass B may commit a tile as soon as it is read: no other tile reads it in this mini-batch.
"""

import triton
import triton.language as tl

from .common import dot, gelu, inner_grad, inner_grad_backward


@triton.jit
def mlp_fwd_kernel(
    q_ptr,  # [H, NT, D] input dtype
    k_ptr,
    v_ptr,
    lam_ptr,  # [H, NT] fp32
    tau_ptr,  # [BS] fp32
    lnw_ptr,  # [H, D] fp32
    lnb_ptr,
    w1_ptr,  # [S, H, D, M] fp32: initial state in, final state out (the working state)
    w2_ptr,  # [S, H, M, D]
    c1_ptr,  # [S, H, M]
    c2_ptr,  # [S, H, D]
    gw1_ptr,
    gw2_ptr,
    gc1_ptr,
    gc2_ptr,
    zb_ptr,  # [H, NT, D] fp32 out
    ckw1_ptr,  # [C, H, D, M] fp32 out: states at every GROUP-th mini-batch
    ckw2_ptr,  # [C, H, M, D]
    ckc1_ptr,  # [C, H, M]
    ckc2_ptr,  # [C, H, D]
    cu_blk_ptr,
    cu_ck_ptr,
    commit_ptr,
    NT,
    H,
    D,
    M,
    eps,
    BS: tl.constexpr,
    BD: tl.constexpr,
    BM: tl.constexpr,
    GROUP: tl.constexpr,
    CAUSAL: tl.constexpr,
    HAS_ACC: tl.constexpr,
):
    s = tl.program_id(0)
    h = tl.program_id(1)
    sh = s * H + h
    DT = q_ptr.dtype.element_ty
    n0 = tl.load(cu_blk_ptr + s)
    n1 = tl.load(cu_blk_ptr + s + 1)
    ck0 = tl.load(cu_ck_ptr + s)
    commit_last = tl.load(commit_ptr + s)
    ri = tl.arange(0, BS)
    rd = tl.arange(0, BD)
    rm = tl.arange(0, BM)
    cm = rd < D
    xm = (ri[:, None] >= 0) & cm[None, :]  # [BS, BD]
    m1 = cm[:, None] & (rm[None, :] >= 0)  # [BD, BM]
    m2 = (rm[:, None] >= 0) & cm[None, :]  # [BM, BD]
    tau = tl.load(tau_ptr + ri)
    t_last = tl.load(tau_ptr + BS - 1)
    lnw = tl.load(lnw_ptr + h * D + rd, mask=cm, other=0.0)
    lnb = tl.load(lnb_ptr + h * D + rd, mask=cm, other=0.0)
    tri = ri[:, None] >= ri[None, :]
    w1 = w1_ptr + sh * D * M
    w2 = w2_ptr + sh * M * D
    c1p = c1_ptr + sh * M
    gw1 = gw1_ptr + sh * D * M
    gw2 = gw2_ptr + sh * M * D
    gc1p = gc1_ptr + sh * M
    c2 = tl.load(c2_ptr + sh * D + rd, mask=cm, other=0.0)  # [BD]
    gc2 = tl.load(gc2_ptr + sh * D + rd, mask=cm, other=0.0)
    for n in range(n0, n1):
        is_ck = (n - n0) % GROUP == 0
        ck = (ck0 + (n - n0) // GROUP) * H + h
        tl.store(ckc2_ptr + ck * D + rd, c2, mask=cm & is_ck)
        toff = h * NT * D + (n * BS + ri)[:, None] * D + rd[None, :]
        qb = tl.load(q_ptr + toff, mask=xm, other=0.0)  # [BS, BD] DT
        kb = tl.load(k_ptr + toff, mask=xm, other=0.0)
        vb = tl.load(v_ptr + toff, mask=xm, other=0.0)
        lam = tl.load(lam_ptr + h * NT + n * BS + ri)
        tgt = vb.to(tl.float32) - kb.to(tl.float32)
        Mlr = tau[:, None] * lam[None, :]  # [BS, BS]
        if CAUSAL:
            Mlr = tl.where(tri, Mlr, 0.0)
        AM0 = Mlr * (dot(qb, tl.trans(kb), DT) + 1.0)
        first = n == n0
        f = tl.where(n == n1 - 1, commit_last, 1.0)
        live = first | (n == n1 - 1)  # only there can the gW tiles change
        # pass A: Z2 = gelu(K W1 + c1) W2 + c2, saving the state tiles at checkpoints
        Z2 = tl.zeros([BS, BD], dtype=tl.float32) + c2[None, :]
        for m0 in range(0, M, BM):
            off1 = rd[:, None] * M + (m0 + rm)[None, :]
            off2 = (m0 + rm)[:, None] * D + rd[None, :]
            W1 = tl.load(w1 + off1, mask=m1, other=0.0)  # [BD, BM]
            W2 = tl.load(w2 + off2, mask=m2, other=0.0)  # [BM, BD]
            c1 = tl.load(c1p + m0 + rm)  # [BM]
            tl.store(ckw1_ptr + ck * D * M + off1, W1, mask=m1 & is_ck)
            tl.store(ckw2_ptr + ck * M * D + off2, W2, mask=m2 & is_ck)
            tl.store(ckc1_ptr + ck * M + m0 + rm, c1, mask=(rm >= 0) & is_ck)
            X2, _, _ = gelu(dot(kb, W1, DT) + c1[None, :])  # [BS, BM]
            Z2 += dot(X2, W2, DT)
        xh, rstd, gy, G2 = inner_grad(Z2, tgt, lnw, lnb, cm, D, eps)
        lG2 = lam[:, None] * G2
        # pass B: G1, the first layer's dual chain, S2 and Xb2 W2; then commit the tile
        S2 = tl.zeros([BS, BS], dtype=tl.float32)
        XbW2 = tl.zeros([BS, BD], dtype=tl.float32)
        for m0 in range(0, M, BM):
            off1 = rd[:, None] * M + (m0 + rm)[None, :]
            off2 = (m0 + rm)[:, None] * D + rd[None, :]
            W1 = tl.load(w1 + off1, mask=m1, other=0.0)
            W2 = tl.load(w2 + off2, mask=m2, other=0.0)
            c1 = tl.load(c1p + m0 + rm)
            if HAS_ACC:  # non-zero only before the sequence's first commit
                gW1 = tl.load(gw1 + off1, mask=m1 & first, other=0.0)
                gW2 = tl.load(gw2 + off2, mask=m2 & first, other=0.0)
                gc1 = tl.load(gc1p + m0 + rm, mask=(rm >= 0) & first, other=0.0)
            else:
                gW1 = tl.zeros([BD, BM], dtype=tl.float32)
                gW2 = tl.zeros([BM, BD], dtype=tl.float32)
                gc1 = tl.zeros([BM], dtype=tl.float32)
            X2, g1, _ = gelu(dot(kb, W1, DT) + c1[None, :])
            G1 = dot(G2, tl.trans(W2), DT) * g1  # [BS, BM]
            Zb1 = dot(qb, W1, DT) + c1[None, :] - dot(AM0, G1, DT)
            if HAS_ACC:
                Zb1 -= tau[:, None] * (dot(qb, gW1, DT) + gc1[None, :])
            Xb2, _, _ = gelu(Zb1)
            S2 += dot(Xb2, tl.trans(X2), DT)
            XbW2 += dot(Xb2, W2, DT)
            if HAS_ACC:
                XbW2 -= tau[:, None] * dot(Xb2, gW2, DT)
            lG1 = lam[:, None] * G1
            P1 = gW1 + dot(tl.trans(kb), lG1, DT)  # [BD, BM]
            P2 = gW2 + dot(tl.trans(X2), lG2, DT)  # [BM, BD]
            Pc1 = gc1 + tl.sum(lG1, 0)
            tl.store(w1 + off1, W1 - f * t_last * P1, mask=m1)
            tl.store(w2 + off2, W2 - f * t_last * P2, mask=m2)
            tl.store(c1p + m0 + rm, c1 - f * t_last * Pc1)
            tl.store(gw1 + off1, (1.0 - f) * P1, mask=m1 & live)
            tl.store(gw2 + off2, (1.0 - f) * P2, mask=m2 & live)
            tl.store(gc1p + m0 + rm, (1.0 - f) * Pc1, mask=(rm >= 0) & live)
        Zb2 = XbW2 + c2[None, :] - dot(Mlr * (S2 + 1.0), G2, DT)
        if HAS_ACC:
            Zb2 -= tau[:, None] * gc2[None, :]
        tl.store(zb_ptr + toff, Zb2, mask=xm)
        Pc2 = gc2 + tl.sum(lG2, 0)
        c2 -= f * t_last * Pc2
        gc2 = (1.0 - f) * Pc2
        tl.debug_barrier()  # the next mini-batch reads tiles other threads wrote
    tl.store(c2_ptr + sh * D + rd, c2, mask=cm)
    tl.store(gc2_ptr + sh * D + rd, gc2, mask=cm)
