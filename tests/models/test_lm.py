"""The language model: dual == naive, gradients, prefill + decode == full forward,
chunked prefill, fixed-size state, generation."""

import pytest
import torch

from ttt_video.models import Backbone, BackboneConfig, LMConfig, from_name
from ttt_video.testing import assert_close

DEBUG = [
    "ttt_linear_debug",
    "ttt_linear_t_debug",
    "ttt_mlp_debug",
    "ttt_mlp_t_debug",
    "attention_debug",
]


def model(name, dtype=torch.float32, **kw):
    torch.manual_seed(0)
    return from_name(name, **kw).to(dtype).eval()


def tokens(B=2, T=37, vocab=257, seed=1):
    return torch.randint(0, vocab, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["ttt_linear_debug", "ttt_mlp_t_debug"])
def test_dual_matches_naive_fp64(name):
    ids = tokens(B=1, T=20)
    naive = model(name, torch.float64, impl="naive")(ids)[0]
    dual = model(name, torch.float64, impl="dual")(ids)[0]
    assert_close("logits", naive, dual, 1e-10)


@pytest.mark.parametrize("name", DEBUG)
def test_every_parameter_gets_a_gradient(name):
    lm = model(name).train()
    logits, _ = lm(tokens(T=21))
    torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), tokens(T=21, seed=2).flatten()
    ).backward()
    for pname, p in lm.named_parameters():
        assert p.grad is not None, f"{pname}: no gradient"
        assert p.grad.abs().max() > 0, f"{pname}: all-zero gradient"


SPLITS = {
    "prefill_then_decode": [19] + [1] * 18,  # 19: not a multiple of b = 16
    "chunked_prefill": [23, 22],
}


@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("name", DEBUG)
def test_split_stream_equals_full_forward(name, split):
    lm = model(name)
    ids = tokens(T=sum(SPLITS[split]))
    with torch.no_grad():
        full, full_state = lm(ids)
        pieces, state, start = [], None, 0
        for n in SPLITS[split]:
            logits, state = lm(ids[:, start : start + n], state)
            pieces.append(logits)
            start += n
    assert_close("logits", full, torch.cat(pieces, 1), 1e-5)
    assert state.position == full_state.position == ids.shape[1]
    assert state.nbytes() == full_state.nbytes()


def test_state_memory_constant_for_ttt_growing_for_attention():
    sizes = {}
    for name in ("ttt_linear_debug", "ttt_mlp_debug", "attention_debug"):
        lm = model(name)
        with torch.no_grad():
            _, s100 = lm(tokens(B=1, T=101))
            _, s100 = lm(tokens(B=1, T=1), s100)
            _, s1000 = lm(tokens(B=1, T=1001))
            _, s1000 = lm(tokens(B=1, T=1), s1000)
        sizes[name] = (s100.nbytes(), s1000.nbytes())
    assert sizes["ttt_linear_debug"][0] == sizes["ttt_linear_debug"][1]
    assert sizes["ttt_mlp_debug"][0] == sizes["ttt_mlp_debug"][1]
    assert sizes["attention_debug"][1] > 9 * sizes["attention_debug"][0]


def test_greedy_generation_matches_recomputing_the_full_forward():
    lm = model("ttt_linear_debug")
    prompt = tokens(B=2, T=7)
    out = lm.generate(prompt, 12, temperature=0.0)
    assert out.shape == (2, 19) and torch.equal(out[:, :7], prompt)
    with torch.no_grad():
        logits, _ = lm(out[:, :-1])
    assert torch.equal(logits[:, 6:].argmax(-1), out[:, 7:])


def test_sampling_is_reproducible_and_stops_at_eos():
    lm = model("ttt_mlp_debug")
    prompt = tokens(B=3, T=5)
    kw = dict(temperature=0.9, top_k=50, top_p=0.9)
    a = lm.generate(prompt, 20, generator=torch.Generator().manual_seed(0), **kw)
    b = lm.generate(prompt, 20, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(a, b)
    eos = int(a[0, 5])
    c = lm.generate(prompt, 20, eos_id=eos, generator=torch.Generator().manual_seed(0), **kw)
    assert c.shape[1] <= 25 and torch.equal(c[0, 5:], torch.full_like(c[0, 5:], eos))
    for row in c:
        hits = (row[5:] == eos).nonzero()
        if len(hits):
            assert (row[5 + int(hits[0]) :] == eos).all()


def test_backbone_runs_on_embeddings():
    cfg = BackboneConfig(width=32, num_heads=4, ffn_width=64, num_layers=2)
    h = torch.randn(2, 20, 32)
    y, state = Backbone(cfg)(h)
    assert y.shape == h.shape and len(state.blocks) == 2 and state.position == 20


@pytest.mark.parametrize("field, value", [("vocab_size", 0), ("num_layers", 0), ("width", 100)])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        LMConfig(**{field: value})


def test_untied_head():
    lm = model("ttt_linear_debug", tie_embeddings=False)
    assert lm.head is not None and lm(tokens(T=5))[0].shape == (2, 5, 257)


@pytest.mark.parametrize("name", DEBUG)
def test_a_state_of_other_streams_is_an_error_that_names_it(name):
    lm = model(name)
    ids = tokens(T=20)
    with torch.no_grad():
        _, state = lm(ids)
        with pytest.raises(ValueError, match=r"state: carries 2 streams, the input 1 \(B must"):
            lm(ids[:1], state)


@pytest.mark.parametrize("bad", [257, 1000, -1])
def test_token_ids_outside_the_vocabulary_are_an_error_that_says_so(bad):
    lm = model("ttt_linear_debug")
    ids = tokens(T=6)
    ids[1, 3] = bad
    with pytest.raises(ValueError, match=r"input_ids: token ids must lie in \[0, 257\)"):
        lm(ids)
    ids[1, 3] = 256  # the last id of the vocabulary is fine
    assert lm(ids)[0].shape == (2, 6, 257)
