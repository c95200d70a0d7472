"""Triton kernels of TTT-Linear's dual form: forward and backward of the state chain.

Letters: ``S`` sequences, ``H`` heads, ``D`` head dim, ``BD`` its power-of-two block
(columns ``>= D`` masked), ``BS = b`` the mini-batch size, ``NT`` padded tokens of all
sequences together (a multiple of ``BS``), ``n`` a mini-batch index into them, ``GROUP``
mini-batches between saved states. One program per (sequence, head) walks the
mini-batches ``cu_blk[s] .. cu_blk[s+1]`` of its sequence; the state ``W: [BD, BD]``,
``c: [BD]`` and the accumulated gradient ``gW, gc`` stay in registers in fp32.

Per mini-batch (kernels/README.md section 3; ``f`` = 1 except on a sequence's last
mini-batch when it ends mid-mini-batch)::

    Z  = K W + c            G = dl/dZ            M = mask o tau lam^T
    Zb = Q W + c - (M o (Q K^T + 1)) G - tau o (Q gW + gc)
    P  = gW + K^T (lam o G)      W <- W - f tau_{b-1} P      gW <- (1 - f) P

The output LayerNorm and residual are applied outside (vectorised PyTorch).
"""

import triton
import triton.language as tl

from ttt_video.kernels.triton.common import (
    dot,
    dot_from_memory,
    head_constants,
    inner_grad,
    inner_grad_backward,
    load_block,
    masked_lr,
    sequence_span,
)


@triton.jit
def inner_step(kb, W, c, gW, gc, lam, tgt, lnw, lnb, cm, D, eps, DT: tl.constexpr):
    """One mini-batch's inner gradient at the state ``W: [BD, BD], c: [BD]`` it starts from,
    shared by the forward and the backward's re-runs of it.

    Returns the LayerNorm statistics ``xh, rstd, gy``, ``G = dl/dZ: [BS, BD]`` of
    ``Z = K W + c``, and the update ``P = gW + K^T (lam o G): [BD, BD]``,
    ``Pc = gc + sum_i lam_i G_i: [BD]`` with the gradient ``gW, gc`` accumulated before (0.0
    where the caller adds it itself). The products never need ``Q`` (loaded later), and
    ``gW`` is the product's accumulator: the forward's shared memory stays at 96 KB for fp32
    at d = 128, b = 64 (128 KB with ``Q`` loaded first, 100 KB with ``gW`` added after).
    """
    xh, rstd, gy, G = inner_grad(dot(kb, W, DT) + c[None, :], tgt, lnw, lnb, cm, D, eps)
    lG = lam[:, None] * G
    return xh, rstd, gy, G, gW + dot(tl.trans(kb), lG, DT), gc + tl.sum(lG, 0)


@triton.jit(do_not_specialize=["causal"])
def linear_fwd_kernel(
    q_ptr,  # [H, NT, D] input dtype
    k_ptr,
    v_ptr,
    lam_ptr,  # [H, NT] fp32, 0 on padded tokens
    tau_ptr,  # [BS] fp32
    lnw_ptr,  # [H, D] fp32
    lnb_ptr,
    w_ptr,  # [S, H, D, D] fp32: initial state in, final state out
    c_ptr,  # [S, H, D]
    gw_ptr,  # [S, H, D, D]
    gc_ptr,  # [S, H, D]
    zb_ptr,  # [H, NT, D] fp32 out: pre-LN outputs
    ckw_ptr,  # [C, H, D, D] fp32 out: the state at every GROUP-th mini-batch
    ckc_ptr,  # [C, H, D]
    cu_blk_ptr,  # [S + 1] int32: first mini-batch of each sequence
    cu_ck_ptr,  # [S + 1] int32: first checkpoint of each sequence
    commit_ptr,  # [S] fp32: 1 when the sequence ends at a mini-batch border
    NT,
    H,
    D,
    eps,
    causal,  # 1: query i sees tokens j <= i of its mini-batch; 0: all of them
    BS: tl.constexpr,
    BD: tl.constexpr,
    GROUP: tl.constexpr,
    HAS_ACC: tl.constexpr,
):
    s = tl.program_id(0)
    h = tl.program_id(1)
    sh = s * H + h
    DT = q_ptr.dtype.element_ty
    n0, n1, ck0, commit_last = sequence_span(cu_blk_ptr, cu_ck_ptr, commit_ptr, s)
    ri, rd, cm, xm, tau, t_last, lnw, lnb, vis = head_constants(
        tau_ptr, lnw_ptr, lnb_ptr, h, D, causal, BS, BD
    )
    wm = cm[:, None] & cm[None, :]  # [BD, BD]
    woff = rd[:, None] * D + rd[None, :]
    W = tl.load(w_ptr + sh * D * D + woff, mask=wm, other=0.0)  # [BD, BD]
    c = tl.load(c_ptr + sh * D + rd, mask=cm, other=0.0)  # [BD]
    gW = tl.load(gw_ptr + sh * D * D + woff, mask=wm, other=0.0)
    gc = tl.load(gc_ptr + sh * D + rd, mask=cm, other=0.0)
    for n in range(n0, n1):
        # checkpoint by masked store, not by branch
        is_ck = (n - n0) % GROUP == 0
        ck = (ck0 + (n - n0) // GROUP) * H + h
        tl.store(ckw_ptr + ck * D * D + woff, W, mask=wm & is_ck)
        tl.store(ckc_ptr + ck * D + rd, c, mask=cm & is_ck)
        toff, kb, lam, tgt = load_block(k_ptr, v_ptr, lam_ptr, h, n, NT, D, ri, rd, xm, BS)
        G, P, Pc = inner_step(kb, W, c, gW, gc, lam, tgt, lnw, lnb, cm, D, eps, DT)[3:]
        qb = tl.load(q_ptr + toff, mask=xm, other=0.0)
        AM = masked_lr(tau, lam, vis) * (dot(qb, tl.trans(kb), DT) + 1.0)  # [BS, BS]
        Zb = dot(qb, W, DT) + c[None, :] - dot(AM, G, DT)
        if HAS_ACC:  # gradient accumulated before this call; zero after the first commit
            Zb -= tau[:, None] * (dot(qb, gW, DT) + gc[None, :])
        tl.store(zb_ptr + toff, Zb, mask=xm)
        f = tl.where(n == n1 - 1, commit_last, 1.0)
        W -= f * t_last * P
        c -= f * t_last * Pc
        gW = (1.0 - f) * P
        gc = (1.0 - f) * Pc
    tl.debug_barrier()  # every thread has read the initial state before any overwrites it
    tl.store(w_ptr + sh * D * D + woff, W, mask=wm)
    tl.store(c_ptr + sh * D + rd, c, mask=cm)
    tl.store(gw_ptr + sh * D * D + woff, gW, mask=wm)
    tl.store(gc_ptr + sh * D + rd, gc, mask=cm)


@triton.jit(do_not_specialize=["causal"])
def linear_bwd_kernel(
    q_ptr,  # [H, NT, D] input dtype
    k_ptr,
    v_ptr,
    lam_ptr,  # [H, NT] fp32
    tau_ptr,  # [BS] fp32
    lnw_ptr,  # [H, D] fp32
    lnb_ptr,
    gw0_ptr,  # [S, H, D, D] fp32: accumulated gradient of the initial state
    gc0_ptr,  # [S, H, D]
    gw0dt_ptr,  # [S, H, D, D] input dtype: gw0 for the products (an fp32 operand loaded from
    # global memory would take twice the shared memory)
    ckw_ptr,  # [C, H, D, D] fp32: states saved by the forward
    ckc_ptr,  # [C, H, D]
    sw_ptr,  # [S, H, GROUP, D, D] input dtype scratch: start weights of one group (only
    # products read them: a DT copy halves their shared-memory operand)
    sc_ptr,  # [S, H, GROUP, D]
    dzb_ptr,  # [H, NT, D] fp32: adjoint of the pre-LN outputs
    dw_ptr,  # [S, H, D, D] fp32: adjoint of the final state in, of the initial state out
    dc_ptr,
    dgw_ptr,
    dgc_ptr,
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
    eps,
    causal,  # 1: query i sees tokens j <= i of its mini-batch; 0: all of them
    BS: tl.constexpr,
    BD: tl.constexpr,
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
    wm = cm[:, None] & cm[None, :]  # [BD, BD]
    woff = rd[:, None] * D + rd[None, :]
    dW = tl.load(dw_ptr + sh * D * D + woff, mask=wm, other=0.0)  # [BD, BD] adjoint of W
    dc = tl.load(dc_ptr + sh * D + rd, mask=cm, other=0.0)
    dgW = tl.load(dgw_ptr + sh * D * D + woff, mask=wm, other=0.0)
    dgc = tl.load(dgc_ptr + sh * D + rd, mask=cm, other=0.0)
    dtau = tl.zeros([BS], dtype=tl.float32)
    dlnw = tl.zeros([BD], dtype=tl.float32)
    dlnb = tl.zeros([BD], dtype=tl.float32)
    sw = sw_ptr + sh * GROUP * D * D
    sc = sc_ptr + sh * GROUP * D
    ng = (n1 - n0 + GROUP - 1) // GROUP
    for gi in range(0, ng):
        g = ng - 1 - gi  # groups in reverse
        ns = n0 + g * GROUP
        ne = tl.minimum(ns + GROUP, n1)
        ck = (ck0 + g) * H + h
        W = tl.load(ckw_ptr + ck * D * D + woff, mask=wm, other=0.0)
        c = tl.load(ckc_ptr + ck * D + rd, mask=cm, other=0.0)
        # re-run the group forward, keeping each mini-batch's start state in scratch
        for n in range(ns, ne):
            tl.store(sw + (n - ns) * D * D + woff, W.to(DT), mask=wm)
            tl.store(sc + (n - ns) * D + rd, c, mask=cm)
            kb, lam, tgt = load_block(k_ptr, v_ptr, lam_ptr, h, n, NT, D, ri, rd, xm, BS)[1:]
            P, Pc = inner_step(kb, W, c, 0.0, 0.0, lam, tgt, lnw, lnb, cm, D, eps, DT)[4:]
            if HAS_ACC:  # gW is non-zero only before the sequence's first commit
                first = n == n0
                P += tl.load(gw0_ptr + sh * D * D + woff, mask=wm & first, other=0.0)
                Pc += tl.load(gc0_ptr + sh * D + rd, mask=cm & first, other=0.0)
            # only committing mini-batches continue the group
            W -= t_last * P
            c -= t_last * Pc
        tl.debug_barrier()  # scratch written by other threads of this program
        # Shared memory: a block used by products keeps a staged copy from where it is made
        # to its last product. So the products with a [BD, BD] operand (W, dP, gW) read both
        # operands from memory in chunks of KC head-dim columns (dot_from_memory), G, dP and
        # dZ (computed, not loaded) are parked for them in outputs written only later (dV,
        # dgW, dK), and Q, K are loaded again (".cg") where used last: fp32 at d = 128,
        # b = 64 needs 96 KB (benchmarks/kernels_gpu.md).
        for j in range(0, ne - ns):
            n = ne - 1 - j
            wn = sw + (n - ns) * D * D  # this mini-batch's start state (input dtype)
            c = tl.load(sc + (n - ns) * D + rd, mask=cm, other=0.0)
            first = n == n0
            toff, kb, lam, tgt = load_block(k_ptr, v_ptr, lam_ptr, h, n, NT, D, ri, rd, xm, BS)
            rows = h * NT * D + (n * BS + ri) * D  # [BS] the mini-batch's rows of Q, K, dZb
            # the forward step (inner_step) with Z = K W from memory in chunks
            Z = dot_from_memory(k_ptr, rows, wn, D, rd, cm, D, BD, KC, DT) + c[None, :]
            xh, rstd, gy, G = inner_grad(Z, tgt, lnw, lnb, cm, D, eps)
            if HAS_ACC:  # the gradient accumulated before the call: first mini-batch only
                gW = tl.load(gw0_ptr + sh * D * D + woff, mask=wm & first, other=0.0)
                gc = tl.load(gc0_ptr + sh * D + rd, mask=cm & first, other=0.0)
            else:
                gW = tl.zeros([BD, BD], dtype=tl.float32)
                gc = tl.zeros([BD], dtype=tl.float32)
            lG = lam[:, None] * G
            P = gW + dot(tl.trans(kb), lG, DT)
            Pc = gc + tl.sum(lG, 0)
            tl.store(dv_ptr + toff, G, mask=xm)  # parked (dV is written last)
            qb = tl.load(q_ptr + toff, mask=xm, other=0.0)
            # Zb = Q W + c - AM G - tau o (Q gW + gc)
            M = masked_lr(tau, lam, vis)
            S_ = dot(qb, tl.trans(kb), DT)  # [BS, BS]
            AM = M * (S_ + 1.0)
            dzb = tl.load(dzb_ptr + toff, mask=xm, other=0.0)  # [BS, BD]
            dGz = -dot(tl.trans(AM), dzb, DT)  # [BS, BD]
            # commit W' = W - f t P, gW' = (1 - f) P
            f = tl.where(n == n1 - 1, commit_last, 1.0)
            dP = -f * t_last * dW + (1.0 - f) * dgW  # [BD, BD]
            dPc = -f * t_last * dc + (1.0 - f) * dgc
            dt_last = -f * (tl.sum(tl.sum(dW * P, 1), 0) + tl.sum(dc * Pc, 0))
            dtau += tl.where(ri == BS - 1, dt_last, 0.0)
            dpw = dgw_ptr + sh * D * D
            tl.store(dpw + woff, dP, mask=wm)  # parked (dgW is written at the end)
            tl.debug_barrier()  # G and dP parked by every thread
            # P = gW + K^T (lam o G)
            GdP = dot_from_memory(dv_ptr, rows, dpw, 1, rd * D, cm, D, BD, KC, DT)  # [BS, BD]
            KdP = dot_from_memory(k_ptr, rows, dpw, D, rd, cm, D, BD, KC, DT)
            dG = lam[:, None] * (KdP + dPc[None, :]) + dGz
            dK = lam[:, None] * GdP
            dlam = tl.sum(kb.to(tl.float32) * GdP, 1) + tl.sum(G * dPc[None, :], 1)
            dgW = dP
            dgc = dPc
            qb = tl.load(q_ptr + toff, mask=xm, other=0.0, cache_modifier=".cg")
            dW += dot(tl.trans(qb), dzb, DT)
            dc += tl.sum(dzb, 0)
            dQ = tl.zeros([BS, BD], dtype=tl.float32)
            if HAS_ACC:
                dgc -= tl.sum(dzb * tau[:, None], 0)  # its reduction scratch before tdz's copy
                gwp = gw0dt_ptr + sh * D * D
                QgW = dot_from_memory(q_ptr, rows, gwp, D, rd, cm, D, BD, KC, DT)
                dtau -= tl.sum(dzb * (tl.where(first, QgW, 0.0) + gc[None, :]), 1)
                # dZb again (".cv"): tdz's copy is staged for its product only
                tdz = tau[:, None] * tl.load(
                    dzb_ptr + toff, mask=xm, other=0.0, cache_modifier=".cv"
                )
                dgW -= dot(tl.trans(qb), tdz, DT)
                dzgW = dot_from_memory(dzb_ptr, rows, gwp, 1, rd * D, cm, D, BD, KC, DT)
                dQ -= tl.where(first, tau[:, None] * dzgW, 0.0)
            dA = -dot_from_memory(dzb_ptr, rows, dv_ptr, 1, rows, ri >= 0, D, BD, KC, DT)
            dM = dA * (S_ + 1.0)
            dM = tl.where(vis, dM, 0.0)
            dS = dA * M
            kb = tl.load(k_ptr + toff, mask=xm, other=0.0, cache_modifier=".cg")
            dQ += dot(dS, kb, DT)
            dK += dot(tl.trans(dS), qb, DT)
            dlam += tl.sum(dM * tau[:, None], 0)  # M[i, j] = tau_i lam_j
            dtau += tl.sum(dM * lam[None, :], 1)
            # G = J(Z) gy
            dZ, dtgt, dlw, dlb = inner_grad_backward(dG, xh, rstd, gy, G, tgt, lnw, lnb, cm, D)
            dlnw += dlw
            dlnb += dlb
            # Z = K W + c; tgt = V - K
            dW += dot(tl.trans(kb), dZ, DT)
            dc += tl.sum(dZ, 0)
            tl.store(dk_ptr + toff, dZ, mask=xm)  # parked like G
            tl.debug_barrier()
            dQ += dot_from_memory(dzb_ptr, rows, wn, 1, rd * D, cm, D, BD, KC, DT)
            dK += dot_from_memory(dk_ptr, rows, wn, 1, rd * D, cm, D, BD, KC, DT) - dtgt
            tl.debug_barrier()  # every thread has read the parked dZ before dK overwrites it
            tl.store(dq_ptr + toff, dQ, mask=xm)
            tl.store(dk_ptr + toff, dK, mask=xm)
            tl.store(dv_ptr + toff, dtgt, mask=xm)
            tl.store(dlam_ptr + h * NT + n * BS + ri, dlam)
        tl.debug_barrier()  # the next group overwrites the scratch
    tl.store(dw_ptr + sh * D * D + woff, dW, mask=wm)
    tl.store(dc_ptr + sh * D + rd, dc, mask=cm)
    tl.store(dgw_ptr + sh * D * D + woff, dgW, mask=wm)
    tl.store(dgc_ptr + sh * D + rd, dgc, mask=cm)
    tl.store(dtau_ptr + sh * BS + ri, dtau)
    tl.store(dlnw_ptr + sh * D + rd, dlnw, mask=cm)
    tl.store(dlnb_ptr + sh * D + rd, dlnb, mask=cm)
