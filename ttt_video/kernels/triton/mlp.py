"""Triton kernels of TTT-MLP's dual form: forward and backward of the state chain.

Letters: ``S`` sequences, ``H`` heads, ``D`` head dim (``BD`` its power-of-two block, columns
``>= D`` masked), ``M`` hidden width (``4D``), ``BM`` hidden columns per tile, ``BS = b``
the mini-batch size, ``NT`` padded tokens, ``GROUP`` mini-batches between saved states. One
program per (sequence, head). The state ``W1: [D, M]``, ``W2: [M, D]``, ``c1: [M]`` lives in
fp32 global memory (the final-state buffers, updated in place; L2-resident) and is visited
in ``[BD, BM]`` / ``[BM, BD]`` tiles; ``c2, gc2: [BD]`` stay in registers.

Per mini-batch (kernels/README.md section 3, two inner layers)::

    pass A, per tile:  Z1 = K W1 + c1   X2 = gelu(Z1)   Z2 += X2 W2        -> G2 = dl/dZ2
    pass B, per tile:  G1 = (G2 W2^T) o gelu'(Z1)
                       Zb1 = Q W1 + c1 - (M o (Q K^T + 1)) G1   Xb2 = gelu(Zb1)
                       S2 += Xb2 X2^T   XbW2 += Xb2 W2   then commit the tile:
                       W1 -= f t (gW1 + K^T (lam o G1))   W2 -= f t (gW2 + X2^T (lam o G2))
    Zb2 = XbW2 + c2 - (M o (S2 + 1)) G2   (terms with gW only before the first commit)

Pass B commits a tile as soon as it is read (no other tile reads it in this mini-batch); a
tile read and then overwritten, or written in one mini-batch and read in the next, is so only
after a ``tl.debug_barrier()`` (kernels/README.md section 12). In pass B and the backward's
passes 2-3 no ``[BS, BD]`` block stays staged in shared memory across the tile loop: ``K``,
``Q``, ``dZb`` and ``G2`` (computed, so parked in the ``Zb`` / ``dV`` output) are read again
at each product (``again``), and the products over the head dim read both operands from
memory in chunks of ``KC`` columns (``common.dot_from_memory``); passes A and 4 keep theirs.
The backward's commit adjoint never forms ``P1, P2``: ``dW . P`` is summed from products.
"""

import triton
import triton.language as tl

from ttt_video.kernels.triton.common import (
    dot,
    dot_from_memory,
    gelu,
    head_constants,
    inner_grad,
    inner_grad_backward,
    load_block,
    masked_lr,
    sequence_span,
)


@triton.jit
def load_tiles(w1, w2, c1p, m0, rd, rm, D, M):
    """Hidden columns ``m0 .. m0 + BM`` of one state: offsets and ``W1: [BD, BM]``,
    ``W2: [BM, BD]``, ``c1: [BM]``."""
    off1 = rd[:, None] * M + (m0 + rm)[None, :]
    off2 = (m0 + rm)[:, None] * D + rd[None, :]
    W1 = tl.load(w1 + off1, mask=(rd < D)[:, None], other=0.0)
    W2 = tl.load(w2 + off2, mask=(rd < D)[None, :], other=0.0)
    return off1, off2, W1, W2, tl.load(c1p + m0 + rm)


@triton.jit
def load_acc_tiles(
    gw1, gw2, gc1p, off1, off2, m0, rd, rm, D, first, BD: tl.constexpr, BM: tl.constexpr,
    HAS_ACC: tl.constexpr,
):  # fmt: skip
    """Tiles of the gradient accumulated before the call (``gW1, gW2, gc1``): non-zero only
    on the sequence's first mini-batch, and only read when the call has one (``HAS_ACC``)."""
    if HAS_ACC:
        gW1 = tl.load(gw1 + off1, mask=(rd < D)[:, None] & first, other=0.0)
        gW2 = tl.load(gw2 + off2, mask=(rd < D)[None, :] & first, other=0.0)
        gc1 = tl.load(gc1p + m0 + rm, mask=(rm >= 0) & first, other=0.0)
    else:
        gW1 = tl.zeros([BD, BM], dtype=tl.float32)
        gW2 = tl.zeros([BM, BD], dtype=tl.float32)
        gc1 = tl.zeros([BM], dtype=tl.float32)
    return gW1, gW2, gc1


@triton.jit
def again(ptr, toff, xm, CACHE: tl.constexpr):
    """A ``[BS, BD]`` block read again from global memory for the products at hand.

    A block kept in registers and used by products across a tile loop keeps a shared-memory
    copy per operand layout for the whole loop (32 KB each in fp32 at b = 64, d = 128); read
    again where it is used, its copy lives for those products only. ``CACHE`` (a load cache
    modifier) differs between the reads of one block in one loop body, so that the compiler
    does not merge them into one value (kernels/README.md section 12)."""
    return tl.load(ptr + toff, mask=xm, other=0.0, cache_modifier=CACHE)


@triton.jit
def hidden(kb, W1, c1, DT: tl.constexpr):
    """``X2 = gelu(Z1)`` of one tile, ``Z1 = K W1 + c1``, with ``gelu'(Z1)`` and
    ``gelu''(Z1)``: ``[BS, BM]`` each."""
    return gelu(dot(kb, W1, DT) + c1[None, :])


@triton.jit
def output_pre_ln(
    kb, w1, w2, c1p, c2, rd, rm, D, M, ckw1, ckw2, ckc1, save, BS: tl.constexpr,
    BD: tl.constexpr, BM: tl.constexpr, SAVE: tl.constexpr, DT: tl.constexpr,
):  # fmt: skip
    """Pass A: ``Z2 = gelu(K W1 + c1) W2 + c2: [BS, BD]`` over the hidden tiles of the state
    at ``w1, w2, c1p``. With ``SAVE``, each tile is also copied to the checkpoint at
    ``ckw1, ckw2, ckc1`` where ``save`` (a masked store: no branch)."""
    Z2 = tl.zeros([BS, BD], dtype=tl.float32) + c2[None, :]
    for m0 in range(0, M, BM):
        off1, off2, W1, W2, c1 = load_tiles(w1, w2, c1p, m0, rd, rm, D, M)
        if SAVE:
            tl.store(ckw1 + off1, W1, mask=(rd < D)[:, None] & save)
            tl.store(ckw2 + off2, W2, mask=(rd < D)[None, :] & save)
            tl.store(ckc1 + m0 + rm, c1, mask=(rm >= 0) & save)
        Z2 += dot(hidden(kb, W1, c1, DT)[0], W2, DT)
    return Z2


@triton.jit
def first_layer(
    k_ptr, g2_ptr, rows, toff, xm, w1, w2, m0, rm, c1, lam, gW1, gW2, gc1, M, D,
    BD: tl.constexpr, KC: tl.constexpr, DT: tl.constexpr,
):  # fmt: skip
    """Per tile of the state at ``w1, w2`` (``c1`` loaded), once ``G2: [BS, BD]`` is parked at
    ``g2_ptr``: ``X2, gelu'(Z1), gelu''(Z1)``, ``hG = G2 W2^T`` and ``G1 = hG o gelu'(Z1)``
    (``[BS, BM]`` each), and the tile's update ``P1 = gW1 + K^T (lam o G1): [BD, BM]``,
    ``P2 = gW2 + X2^T (lam o G2): [BM, BD]``, ``Pc1 = gc1 + sum_i lam_i G1_i: [BM]``.

    The products over the head dim read ``K``, ``G2`` and the tile from global memory in
    chunks of ``KC`` (``rows``: the mini-batch's row offsets; ``common.dot_from_memory``),
    the two over the mini-batch read ``K`` and ``G2`` again: no ``[BS, BD]`` block is staged
    for more than one product. What a caller does not use, the compiler drops."""
    cols = m0 + rm
    hm = rm >= 0
    X2, g1, gg1 = gelu(dot_from_memory(k_ptr, rows, w1, M, cols, hm, D, BD, KC, DT) + c1[None, :])
    hG = dot_from_memory(g2_ptr, rows, w2, 1, cols * D, hm, D, BD, KC, DT)  # G2 W2^T
    G1 = hG * g1
    lG1 = lam[:, None] * G1
    P1 = gW1 + dot(tl.trans(again(k_ptr, toff, xm, ".ca")), lG1, DT)
    P2 = gW2 + dot(tl.trans(lam[:, None] * X2), again(g2_ptr, toff, xm, ".ca"), DT)
    return X2, g1, gg1, hG, G1, P1, P2, gc1 + tl.sum(lG1, 0)


@triton.jit
def query_hidden(
    q_ptr, rows, w1, gw1, m0, rm, c1, AM0, G1, tau, gc1, first, M, D, HAS_ACC: tl.constexpr,
    BD: tl.constexpr, KC: tl.constexpr, DT: tl.constexpr,
):  # fmt: skip
    """``Xb2 = gelu(Zb1)`` of one tile (with its derivatives), the first layer's dual form
    ``Zb1 = Q W1 + c1 - AM0 G1 - tau o (Q gW1 + gc1)`` (the last term only with ``HAS_ACC``,
    ``gW1`` at ``gw1``, zero but on the ``first`` mini-batch); ``Q W1`` and ``Q gW1`` read
    from global memory in chunks like ``first_layer``'s products."""
    cols = m0 + rm
    hm = rm >= 0
    QW1 = dot_from_memory(q_ptr, rows, w1, M, cols, hm, D, BD, KC, DT)
    Zb1 = QW1 + c1[None, :] - dot(AM0, G1, DT)
    if HAS_ACC:
        QgW1 = dot_from_memory(q_ptr, rows, gw1, M, cols, hm, D, BD, KC, DT)
        Zb1 -= tau[:, None] * (tl.where(first, QgW1, 0.0) + gc1[None, :])
    return gelu(Zb1)


@triton.jit(do_not_specialize=["causal"])
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
    causal,  # 1: query i sees tokens j <= i of its mini-batch; 0: all of them
    BS: tl.constexpr,
    BD: tl.constexpr,
    BM: tl.constexpr,
    GROUP: tl.constexpr,
    HAS_ACC: tl.constexpr,
    KC: tl.constexpr,
):
    s = tl.program_id(0)
    h = tl.program_id(1)
    sh = s * H + h
    DT = q_ptr.dtype.element_ty
    n0, n1, ck0, commit_last = sequence_span(cu_blk_ptr, cu_ck_ptr, commit_ptr, s)
    ri, rd, cm, xm, tau, t_last, lnw, lnb, vis = head_constants(
        tau_ptr, lnw_ptr, lnb_ptr, h, D, causal, BS, BD
    )
    rm = tl.arange(0, BM)
    m1 = cm[:, None] & (rm[None, :] >= 0)  # [BD, BM]
    m2 = (rm[:, None] >= 0) & cm[None, :]  # [BM, BD]
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
        toff, kb, lam, tgt = load_block(k_ptr, v_ptr, lam_ptr, h, n, NT, D, ri, rd, xm, BS)
        rows = h * NT * D + (n * BS + ri) * D  # [BS] row offsets of Q, K, Zb
        qb = tl.load(q_ptr + toff, mask=xm, other=0.0)
        Mlr = masked_lr(tau, lam, vis)  # [BS, BS]
        AM0 = Mlr * (dot(qb, tl.trans(kb), DT) + 1.0)
        first = n == n0
        f = tl.where(n == n1 - 1, commit_last, 1.0)
        live = first | (n == n1 - 1)  # only there can the gW tiles change
        # pass A, saving the state tiles at checkpoints
        ck1, ck2, ckc1 = ckw1_ptr + ck * D * M, ckw2_ptr + ck * M * D, ckc1_ptr + ck * M
        Z2 = output_pre_ln(
            kb, w1, w2, c1p, c2, rd, rm, D, M, ck1, ck2, ckc1, is_ck, BS, BD, BM, True, DT
        )
        G2 = inner_grad(Z2, tgt, lnw, lnb, cm, D, eps)[3]
        lG2 = lam[:, None] * G2
        tl.store(zb_ptr + toff, G2, mask=xm)  # pass B reads G2 here; Zb2 overwrites it
        tl.debug_barrier()
        # pass B: G1, the first layer's dual chain, S2 and Xb2 W2; then commit the tile
        S2 = tl.zeros([BS, BS], dtype=tl.float32)
        XbW2 = tl.zeros([BS, BD], dtype=tl.float32)
        for m0 in range(0, M, BM):
            off1, off2, W1, W2, c1 = load_tiles(w1, w2, c1p, m0, rd, rm, D, M)
            gW1, gW2, gc1 = load_acc_tiles(
                gw1, gw2, gc1p, off1, off2, m0, rd, rm, D, first, BD, BM, HAS_ACC
            )
            X2, g1, gg1, hG, G1, P1, P2, Pc1 = first_layer(
                k_ptr, zb_ptr, rows, toff, xm, w1, w2, m0, rm, c1, lam, gW1, gW2, gc1, M, D, BD,
                KC, DT,
            )  # fmt: skip
            Xb2 = query_hidden(
                q_ptr, rows, w1, gw1, m0, rm, c1, AM0, G1, tau, gc1, first, M, D, HAS_ACC, BD,
                KC, DT,
            )[0]  # fmt: skip
            S2 += dot(Xb2, tl.trans(X2), DT)
            XbW2 += dot(Xb2, W2, DT)
            if HAS_ACC:
                XbW2 -= tau[:, None] * dot(Xb2, gW2, DT)
            tl.debug_barrier()  # every thread has read this tile before any overwrites it
            tl.store(w1 + off1, W1 - f * t_last * P1, mask=m1)
            tl.store(w2 + off2, W2 - f * t_last * P2, mask=m2)
            tl.store(c1p + m0 + rm, c1 - f * t_last * Pc1)
            tl.store(gw1 + off1, (1.0 - f) * P1, mask=m1 & live)
            tl.store(gw2 + off2, (1.0 - f) * P2, mask=m2 & live)
            tl.store(gc1p + m0 + rm, (1.0 - f) * Pc1, mask=(rm >= 0) & live)
        G2q = again(zb_ptr, toff, xm, ".cg")  # staged for this product only
        Zb2 = XbW2 + c2[None, :] - dot(Mlr * (S2 + 1.0), G2q, DT)
        if HAS_ACC:
            Zb2 -= tau[:, None] * gc2[None, :]
        tl.debug_barrier()  # every thread has read G2 before Zb2 overwrites it
        tl.store(zb_ptr + toff, Zb2, mask=xm)
        Pc2 = gc2 + tl.sum(lG2, 0)
        c2 -= f * t_last * Pc2
        gc2 = (1.0 - f) * Pc2
        tl.debug_barrier()  # the next mini-batch reads tiles other threads wrote
    tl.store(c2_ptr + sh * D + rd, c2, mask=cm)
    tl.store(gc2_ptr + sh * D + rd, gc2, mask=cm)


@triton.jit(do_not_specialize=["causal"])
def mlp_bwd_kernel(
    q_ptr,  # [H, NT, D] input dtype
    k_ptr,
    v_ptr,
    lam_ptr,  # [H, NT] fp32
    tau_ptr,  # [BS] fp32
    lnw_ptr,  # [H, D] fp32
    lnb_ptr,
    gw10_ptr,  # [S, H, D, M] fp32: accumulated gradient of the initial state
    gw20_ptr,  # [S, H, M, D]
    gc10_ptr,  # [S, H, M]
    gc20_ptr,  # [S, H, D]
    ckw1_ptr,  # [C, H, D, M] fp32: states saved by the forward
    ckw2_ptr,
    ckc1_ptr,
    ckc2_ptr,
    sw1_ptr,  # [S, H, GROUP, D, M] fp32 scratch: start states of one group
    sw2_ptr,  # [S, H, GROUP, M, D]
    sc1_ptr,  # [S, H, GROUP, M]
    sc2_ptr,  # [S, H, GROUP, D]
    sdz1_ptr,  # [S, H, BS, M] fp32 scratch: partial dZ1 of one mini-batch
    sdx2_ptr,  # [S, H, BS, M] fp32 scratch: partial dX2
    dzb_ptr,  # [H, NT, D] fp32: adjoint of the pre-LN outputs
    dw1_ptr,  # [S, H, D, M] fp32: adjoint of the final state in, of the initial state out
    dw2_ptr,
    dc1_ptr,
    dc2_ptr,
    dgw1_ptr,
    dgw2_ptr,
    dgc1_ptr,
    dgc2_ptr,
    dq_ptr,  # [H, NT, D] fp32 out
    dk_ptr,
    dv_ptr,
    dlam_ptr,  # [H, NT] fp32 out
    dtau_ptr,  # [S, H, BS] fp32 out: per-program partial sums
    dlnw_ptr,  # [S, H, D] fp32 out: per-program partial sums
    dlnb_ptr,
    cu_blk_ptr,
    cu_ck_ptr,
    commit_ptr,
    NT,
    H,
    D,
    M,
    eps,
    causal,  # 1: query i sees tokens j <= i of its mini-batch; 0: all of them
    BS: tl.constexpr,
    BD: tl.constexpr,
    BM: tl.constexpr,
    GROUP: tl.constexpr,
    HAS_ACC: tl.constexpr,
    KC: tl.constexpr,
):
    s = tl.program_id(0)
    h = tl.program_id(1)
    sh = s * H + h
    DT = q_ptr.dtype.element_ty
    n0, n1, ck0, commit_last = sequence_span(cu_blk_ptr, cu_ck_ptr, commit_ptr, s)
    ri, rd, cm, xm, tau, t_last, lnw, lnb, vis = head_constants(
        tau_ptr, lnw_ptr, lnb_ptr, h, D, causal, BS, BD
    )
    rm = tl.arange(0, BM)
    m1 = cm[:, None] & (rm[None, :] >= 0)
    m2 = (rm[:, None] >= 0) & cm[None, :]
    offh = ri[:, None] * M + rm[None, :]  # [BS, BM] into a hidden-width scratch row block
    gw10 = gw10_ptr + sh * D * M
    gw20 = gw20_ptr + sh * M * D
    gc10 = gc10_ptr + sh * M
    sdz1 = sdz1_ptr + sh * BS * M
    sdx2 = sdx2_ptr + sh * BS * M
    dw1 = dw1_ptr + sh * D * M
    dw2 = dw2_ptr + sh * M * D
    dc1p = dc1_ptr + sh * M
    dgw1 = dgw1_ptr + sh * D * M
    dgw2 = dgw2_ptr + sh * M * D
    dgc1p = dgc1_ptr + sh * M
    dc2 = tl.load(dc2_ptr + sh * D + rd, mask=cm, other=0.0)  # [BD] adjoint of c2
    dgc2 = tl.load(dgc2_ptr + sh * D + rd, mask=cm, other=0.0)
    dtau = tl.zeros([BS], dtype=tl.float32)
    dlnw = tl.zeros([BD], dtype=tl.float32)
    dlnb = tl.zeros([BD], dtype=tl.float32)
    ng = (n1 - n0 + GROUP - 1) // GROUP
    for gi in range(0, ng):
        g = ng - 1 - gi  # groups in reverse
        ns = n0 + g * GROUP
        ne = tl.minimum(ns + GROUP, n1)
        ck = (ck0 + g) * H + h
        # slot 0 of the scratch <- the saved state
        tl.store(sc2_ptr + (sh * GROUP) * D + rd, tl.load(ckc2_ptr + ck * D + rd, mask=cm), mask=cm)
        for m0 in range(0, M, BM):
            off1 = rd[:, None] * M + (m0 + rm)[None, :]
            off2 = (m0 + rm)[:, None] * D + rd[None, :]
            sl = sh * GROUP
            tl.store(
                sw1_ptr + sl * D * M + off1, tl.load(ckw1_ptr + ck * D * M + off1, mask=m1), mask=m1
            )
            tl.store(
                sw2_ptr + sl * M * D + off2, tl.load(ckw2_ptr + ck * M * D + off2, mask=m2), mask=m2
            )
            tl.store(sc1_ptr + sl * M + m0 + rm, tl.load(ckc1_ptr + ck * M + m0 + rm))
        tl.debug_barrier()
        # re-run the group forward: slot j holds the start state of mini-batch ns + j
        for n in range(ns, ne - 1):
            sl = sh * GROUP + (n - ns)
            sw1 = sw1_ptr + sl * D * M  # this mini-batch's start state in the scratch
            sw2 = sw2_ptr + sl * M * D
            sc1 = sc1_ptr + sl * M
            first = n == n0
            toff, kb, lam, tgt = load_block(k_ptr, v_ptr, lam_ptr, h, n, NT, D, ri, rd, xm, BS)
            rows = h * NT * D + (n * BS + ri) * D  # [BS] row offsets of Q, K, dV
            c2 = tl.load(sc2_ptr + sl * D + rd, mask=cm, other=0.0)
            Z2 = output_pre_ln(
                kb, sw1, sw2, sc1, c2, rd, rm, D, M, sw1, sw2, sc1, False, BS, BD, BM, False, DT
            )
            G2 = inner_grad(Z2, tgt, lnw, lnb, cm, D, eps)[3]
            lG2 = lam[:, None] * G2
            tl.store(dv_ptr + toff, G2, mask=xm)  # first_layer reads G2 here (dV is written later)
            tl.debug_barrier()
            for m0 in range(0, M, BM):
                off1, off2, W1, W2, c1 = load_tiles(sw1, sw2, sc1, m0, rd, rm, D, M)
                gW1, gW2, gc1 = load_acc_tiles(
                    gw10, gw20, gc10, off1, off2, m0, rd, rm, D, first, BD, BM, HAS_ACC
                )
                P1, P2, Pc1 = first_layer(
                    k_ptr, dv_ptr, rows, toff, xm, sw1, sw2, m0, rm, c1, lam, gW1, gW2, gc1, M, D,
                    BD, KC, DT,
                )[5:]  # fmt: skip
                # only committing mini-batches continue the group
                tl.store(sw1_ptr + (sl + 1) * D * M + off1, W1 - t_last * P1, mask=m1)
                tl.store(sw2_ptr + (sl + 1) * M * D + off2, W2 - t_last * P2, mask=m2)
                tl.store(sc1_ptr + (sl + 1) * M + m0 + rm, c1 - t_last * Pc1)
            Pc2 = tl.sum(lG2, 0)
            if HAS_ACC:
                Pc2 += tl.load(gc20_ptr + sh * D + rd, mask=cm & first, other=0.0)
            tl.store(sc2_ptr + (sl + 1) * D + rd, c2 - t_last * Pc2, mask=cm)
            tl.debug_barrier()
        for j in range(0, ne - ns):
            n = ne - 1 - j
            sl = sh * GROUP + (n - ns)
            sw1 = sw1_ptr + sl * D * M  # this mini-batch's start state in the scratch
            sw2 = sw2_ptr + sl * M * D
            sc1 = sc1_ptr + sl * M
            first = n == n0
            f = tl.where(n == n1 - 1, commit_last, 1.0)
            toff, kb, lam, tgt = load_block(k_ptr, v_ptr, lam_ptr, h, n, NT, D, ri, rd, xm, BS)
            rows = h * NT * D + (n * BS + ri) * D
            qb = tl.load(q_ptr + toff, mask=xm, other=0.0)
            Mlr = masked_lr(tau, lam, vis)
            S0 = dot(qb, tl.trans(kb), DT)
            AM0 = Mlr * (S0 + 1.0)
            c2 = tl.load(sc2_ptr + sl * D + rd, mask=cm, other=0.0)
            if HAS_ACC:
                gc2 = tl.load(gc20_ptr + sh * D + rd, mask=cm & first, other=0.0)
            else:
                gc2 = tl.zeros([BD], dtype=tl.float32)
            # recompute pass 1 (pass A of the forward): Z2 and G2
            Z2 = output_pre_ln(
                kb, sw1, sw2, sc1, c2, rd, rm, D, M, sw1, sw2, sc1, False, BS, BD, BM, False, DT
            )
            xh, rstd, gy, G2 = inner_grad(Z2, tgt, lnw, lnb, cm, D, eps)
            lG2 = lam[:, None] * G2
            tl.store(dv_ptr + toff, G2, mask=xm)  # passes 2 and 3 read G2 here; dV overwrites it
            tl.debug_barrier()
            # recompute pass 2: S2 = Xb2 X2^T (and Xb2 gW2 for the first mini-batch)
            S2 = tl.zeros([BS, BS], dtype=tl.float32)
            XbgW2 = tl.zeros([BS, BD], dtype=tl.float32)
            for m0 in range(0, M, BM):
                # a loop without a barrier or a store would have the compiler hoist the reads
                # of K, Q and G2 out of it, staging them for the whole loop
                tl.debug_barrier()
                tiles = load_tiles(sw1, sw2, sc1, m0, rd, rm, D, M)  # W1, W2 read by products
                off1, off2, c1 = tiles[0], tiles[1], tiles[4]
                gW1, gW2, gc1 = load_acc_tiles(
                    gw10, gw20, gc10, off1, off2, m0, rd, rm, D, first, BD, BM, HAS_ACC
                )
                X2, g1, gg1, hG, G1 = first_layer(
                    k_ptr, dv_ptr, rows, toff, xm, sw1, sw2, m0, rm, c1, lam, gW1, gW2, gc1, M, D,
                    BD, KC, DT,
                )[:5]  # fmt: skip
                Xb2 = query_hidden(
                    q_ptr, rows, sw1, gw10, m0, rm, c1, AM0, G1, tau, gc1, first, M, D, HAS_ACC,
                    BD, KC, DT,
                )[0]  # fmt: skip
                S2 += dot(Xb2, tl.trans(X2), DT)
                if HAS_ACC:
                    XbgW2 += dot(Xb2, gW2, DT)
            AM2 = Mlr * (S2 + 1.0)
            # commit of c2 and the second layer's dual chain (the parts that need no tile)
            dzb = tl.load(dzb_ptr + toff, mask=xm, other=0.0)  # [BS, BD] adjoint of Zb2
            Pc2 = gc2 + tl.sum(lG2, 0)
            dPc2 = -f * t_last * dc2 + (1.0 - f) * dgc2
            dt_last = -f * tl.sum(dc2 * Pc2, 0)
            dG2 = lam[:, None] * dPc2[None, :] - dot(tl.trans(AM2), dzb, DT)  # [BS, BD]
            dlam = tl.sum(G2 * dPc2[None, :], 1)
            dA2 = -dot(dzb, tl.trans(again(dv_ptr, toff, xm, "")), DT)  # [BS, BS]
            dM = dA2 * (S2 + 1.0)
            dS2 = dA2 * Mlr
            dc2 += tl.sum(dzb, 0)
            dgc2 = dPc2
            tdz = tau[:, None] * dzb
            if HAS_ACC:
                dtau -= tl.sum(dzb * (XbgW2 + gc2[None, :]), 1)
                dgc2 -= tl.sum(tdz, 0)
            dA0 = tl.zeros([BS, BS], dtype=tl.float32)
            dQ = tl.zeros([BS, BD], dtype=tl.float32)
            dK = tl.zeros([BS, BD], dtype=tl.float32)
            # pass 3, per tile: commit, P, both dual chains and G1 = (G2 W2^T) o gelu'(Z1)
            for m0 in range(0, M, BM):
                tiles = load_tiles(sw1, sw2, sc1, m0, rd, rm, D, M)  # W1, W2 read by products
                off1, off2, c1 = tiles[0], tiles[1], tiles[4]
                gW1, gW2, gc1 = load_acc_tiles(
                    gw10, gw20, gc10, off1, off2, m0, rd, rm, D, first, BD, BM, HAS_ACC
                )
                # [BS, BD] operands read again at their products (``again``)
                fl = first_layer(
                    k_ptr, dv_ptr, rows, toff, xm, sw1, sw2, m0, rm, c1, lam, gW1, gW2, gc1, M, D,
                    BD, KC, DT,
                )  # fmt: skip
                X2, g1, gg1, hG, G1, Pc1 = fl[0], fl[1], fl[2], fl[3], fl[4], fl[7]
                Xb2, gb1 = query_hidden(
                    q_ptr, rows, sw1, gw10, m0, rm, c1, AM0, G1, tau, gc1, first, M, D, HAS_ACC,
                    BD, KC, DT,
                )[:2]  # fmt: skip
                kq = again(k_ptr, toff, xm, "")
                # commit: W' = W - f t P, gW' = (1 - f) P
                dW1 = tl.load(dw1 + off1, mask=m1, other=0.0)
                dW2 = tl.load(dw2 + off2, mask=m2, other=0.0)
                dc1 = tl.load(dc1p + m0 + rm)
                dP1 = -f * t_last * dW1 + (1.0 - f) * tl.load(dgw1 + off1, mask=m1, other=0.0)
                dP2 = -f * t_last * dW2 + (1.0 - f) * tl.load(dgw2 + off2, mask=m2, other=0.0)
                dPc1 = -f * t_last * dc1 + (1.0 - f) * tl.load(dgc1p + m0 + rm)
                # K dP1 and G2 dP2^T read the tiles of dP from memory, in chunks like
                # first_layer's products: f is 0 or 1, so dP = -t dW (f = 1) or dgW (f = 0)
                dp1, dp2 = tl.where(f == 1.0, dw1, dgw1), tl.where(f == 1.0, dw2, dgw2)
                KdP = dot_from_memory(k_ptr, rows, dp1, M, m0 + rm, rm >= 0, D, BD, KC, DT)
                GdP = dot_from_memory(dv_ptr, rows, dp2, 1, (m0 + rm) * D, rm >= 0, D, BD, KC, DT)
                # dt_last = -f dW . P over the tile, P1 = gW1 + K^T (lam o G1) and
                # P2 = gW2 + X2^T (lam o G2) never formed: dW1 . K^T (lam o G1) =
                # sum(lam o G1 o K dW1), dW2 . X2^T (lam o G2) = sum(lam o X2 o G2 dW2^T) (the
                # products above, which read dW where f = 1, the only case that counts)
                dt_last -= f * (
                    tl.sum(tl.sum(dW1 * gW1, 1), 0)
                    + tl.sum(tl.sum(dW2 * gW2, 1), 0)
                    + tl.sum(tl.sum(lam[:, None] * (G1 * KdP + X2 * GdP), 1), 0)
                    + tl.sum(dc1 * Pc1, 0)
                )
                sdp = tl.where(f == 1.0, -t_last, 1.0)
                G1dP1 = dot(G1, tl.trans(dP1), DT)  # [BS, BD]
                dK += lam[:, None] * G1dP1
                dG1 = lam[:, None] * (sdp * KdP + dPc1[None, :])
                G2dP2 = sdp * GdP  # [BS, BM]
                dX2 = lam[:, None] * G2dP2
                dG2 += lam[:, None] * dot(X2, dP2, DT)
                dlam += (
                    tl.sum(kq.to(tl.float32) * G1dP1, 1)
                    + tl.sum(G1 * dPc1[None, :], 1)
                    + tl.sum(X2 * G2dP2, 1)
                )
                dgW1 = dP1
                dgW2 = dP2
                dgc1 = dPc1
                # Zb2 = Xb2 W2 + c2 - AM2 G2 - tau o (Xb2 gW2 + gc2)
                dzb = again(dzb_ptr, toff, xm, "")
                dW2 += dot(tl.trans(Xb2), dzb, DT)
                w2t = (m0 + rm) * D  # rows of the W2 tile: dZb W2^T reads it as W2^T
                dXb2 = dot_from_memory(dzb_ptr, rows, sw2, 1, w2t, rm >= 0, D, BD, KC, DT)
                dXb2 += dot(dS2, X2, DT)  # [BS, BM]
                dX2 += dot(tl.trans(dS2), Xb2, DT)
                if HAS_ACC:
                    dgW2 -= dot(tl.trans(tau[:, None] * Xb2), dzb, DT)
                    dzgW2 = dot_from_memory(dzb_ptr, rows, gw20, 1, w2t, rm >= 0, D, BD, KC, DT)
                    dXb2 -= tau[:, None] * tl.where(first, dzgW2, 0.0)
                dzb1 = dXb2 * gb1  # through Xb2 = gelu(Zb1)
                # Zb1 = Q W1 + c1 - AM0 G1 - tau o (Q gW1 + gc1)
                dW1 += dot(tl.trans(again(q_ptr, toff, xm, ".cg")), dzb1, DT)
                dc1 += tl.sum(dzb1, 0)
                dA0 -= dot(dzb1, tl.trans(G1), DT)
                dG1 -= dot(tl.trans(AM0), dzb1, DT)
                # the state tiles are read where used (".cg": not merged with load_tiles' reads)
                W1 = tl.load(sw1 + off1, mask=m1, other=0.0, cache_modifier=".cg")
                dQ += dot(dzb1, tl.trans(W1), DT)
                if HAS_ACC:
                    tdz1 = tau[:, None] * dzb1
                    QgW1 = dot_from_memory(q_ptr, rows, gw10, M, m0 + rm, rm >= 0, D, BD, KC, DT)
                    dtau -= tl.sum(dzb1 * (tl.where(first, QgW1, 0.0) + gc1[None, :]), 1)
                    dgW1 -= dot(tl.trans(again(q_ptr, toff, xm, ".cv")), tdz1, DT)
                    dgc1 -= tl.sum(tdz1, 0)
                    gW1 = tl.load(gw10 + off1, mask=m1 & first, other=0.0, cache_modifier=".cg")
                    dQ -= dot(tdz1, tl.trans(gW1), DT)
                # G1 = (G2 W2^T) o gelu'(Z1)
                dh = dG1 * g1
                W2 = tl.load(sw2 + off2, mask=m2, other=0.0, cache_modifier=".cg")
                dG2 += dot(dh, W2, DT)
                dW2 += dot(tl.trans(dh), again(dv_ptr, toff, xm, ".cv"), DT)
                tl.debug_barrier()  # every thread has read this tile before any overwrites it
                tl.store(sdz1 + m0 + offh, dG1 * hG * gg1)  # dZ1 so far
                tl.store(sdx2 + m0 + offh, dX2)
                tl.store(dw1 + off1, dW1, mask=m1)
                tl.store(dw2 + off2, dW2, mask=m2)
                tl.store(dc1p + m0 + rm, dc1)
                tl.store(dgw1 + off1, dgW1, mask=m1)
                tl.store(dgw2 + off2, dgW2, mask=m2)
                tl.store(dgc1p + m0 + rm, dgc1)
            dtau += tl.where(ri == BS - 1, dt_last, 0.0)
            dM += dA0 * (S0 + 1.0)
            dM = tl.where(vis, dM, 0.0)
            dS0 = dA0 * Mlr
            dQ += dot(dS0, again(k_ptr, toff, xm, ""), DT)
            dK += dot(tl.trans(dS0), again(q_ptr, toff, xm, ""), DT)
            dlam += tl.sum(dM * tau[:, None], 0)
            dtau += tl.sum(dM * lam[None, :], 1)
            # G2 = J(Z2) gy
            dZ2, dtgt, dlw, dlb = inner_grad_backward(dG2, xh, rstd, gy, G2, tgt, lnw, lnb, cm, D)
            dlnw += dlw
            dlnb += dlb
            dc2 += tl.sum(dZ2, 0)
            tl.debug_barrier()  # pass 4 reads what pass 3 stored
            # pass 4, per tile: Z2 = X2 W2 + c2, X2 = gelu(Z1), Z1 = K W1 + c1
            for m0 in range(0, M, BM):
                off1, off2, W1, W2, c1 = load_tiles(sw1, sw2, sc1, m0, rd, rm, D, M)
                kq = again(k_ptr, toff, xm, "")
                X2, g1 = hidden(kq, W1, c1, DT)[:2]
                dW2 = tl.load(dw2 + off2, mask=m2, other=0.0)
                dW1 = tl.load(dw1 + off1, mask=m1, other=0.0)
                dc1 = tl.load(dc1p + m0 + rm)
                dX2 = tl.load(sdx2 + m0 + offh) + dot(dZ2, tl.trans(W2), DT)
                dZ1 = tl.load(sdz1 + m0 + offh) + dX2 * g1
                dW2 += dot(tl.trans(X2), dZ2, DT)
                dW1 += dot(tl.trans(kq), dZ1, DT)
                dc1 += tl.sum(dZ1, 0)
                tl.debug_barrier()  # every thread has read this tile before any overwrites it
                tl.store(dw2 + off2, dW2, mask=m2)
                tl.store(dw1 + off1, dW1, mask=m1)
                tl.store(dc1p + m0 + rm, dc1)
                dK += dot(dZ1, tl.trans(W1), DT)
            tl.store(dq_ptr + toff, dQ, mask=xm)
            tl.store(dk_ptr + toff, dK - dtgt, mask=xm)
            tl.store(dv_ptr + toff, dtgt, mask=xm)
            tl.store(dlam_ptr + h * NT + n * BS + ri, dlam)
            tl.debug_barrier()  # the next mini-batch reads the adjoint tiles
    tl.store(dc2_ptr + sh * D + rd, dc2, mask=cm)
    tl.store(dgc2_ptr + sh * D + rd, dgc2, mask=cm)
    tl.store(dtau_ptr + sh * BS + ri, dtau)
    tl.store(dlnw_ptr + sh * D + rd, dlnw, mask=cm)
    tl.store(dlnb_ptr + sh * D + rd, dlnb, mask=cm)
