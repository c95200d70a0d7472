import pytest
import torch


@pytest.fixture
def through_the_op(monkeypatch):
    """Send the dual form's eager path (the autograd.Function ``dual._DualScan``) through the
    custom op ``dual_scan`` instead, uncompiled: what ``torch.compile`` and ``torch.export``
    see of the chain, run in eager mode."""
    from ttt_video.kernels import dual

    class ThroughTheOp:
        @staticmethod
        def apply(q, k, tgt, lam, tau, lnw, lnb, causal, commit_last, save_every, keep_norm, _,
                  *state):  # fmt: skip
            args = (q, k, tgt, lam, tau, lnw, lnb, list(state), causal, commit_last, save_every)
            return torch.ops.ttt_video.dual_scan.default(*args, keep_norm, False)

    monkeypatch.setattr(dual, "_DualScan", ThroughTheOp)
