"""Text corpus -> token shards -> blocks: correctness, determinism, atomicity and errors."""

from __future__ import annotations

import gzip
import json
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from ttt_video.data.text import austen
from ttt_video.data.text import shards as text
from ttt_video.data.text.corpus import CorpusError
from ttt_video.data.text.dataset import TextDataModule, TokenBlockDataset
from ttt_video.data.text.shards import TextPrepOptions, prepare_text, read_meta, token_dtype
from ttt_video.data.text.tokenizers import ByteTokenizer, TokenizerError, load_tokenizer
from ttt_video.paths import cache_dir

try:
    import zstandard
except ImportError:
    zstandard = None
try:
    import tokenizers
except ImportError:
    tokenizers = None

needs_zstd = pytest.mark.skipif(zstandard is None, reason="zstandard not installed (pip install)")
needs_tokenizers = pytest.mark.skipif(tokenizers is None, reason="tokenizers not installed")


def quiet(**kw) -> TextPrepOptions:
    return TextPrepOptions(progress=False, verbose=False, **kw)


def make_corpus(root: Path) -> list[str]:
    """Write .txt, .jsonl (and .jsonl.zst) files under ``root``; return documents in corpus order."""
    rng = np.random.default_rng(0)
    words = ["time", "test", "training", "héllo", "naïve", "état", "long", "video", "日本"]
    docs = [" ".join(rng.choice(words, size=rng.integers(5, 60))) for _ in range(60)]
    (root / "a").mkdir(parents=True)
    for i, doc in enumerate(docs[:20]):
        (root / "a" / f"doc{i:02d}.txt").write_text(doc, encoding="utf-8")
    lines = [json.dumps({"text": d, "meta": {"i": i}}) for i, d in enumerate(docs[20:40])]
    (root / "b.jsonl").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    (root / "notes.md").write_text("not part of the corpus")
    if zstandard is None:
        return docs[:40]
    payload = "\n".join(json.dumps({"text": d}) for d in docs[40:]).encode()
    (root / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(payload))
    return docs


def split_docs(folder: Path, split: str) -> list[str]:
    """Decode a split's stream back into documents (cut at EOS)."""
    meta = read_meta(folder)
    stream = TokenBlockDataset(folder, split, 1).tokens(0, meta["splits"][split]["tokens"])
    cuts = np.flatnonzero(stream == meta["eos_id"])
    assert cuts[-1] == len(stream) - 1, "every document, the last included, ends with EOS"
    tok = load_tokenizer(meta["tokenizer"], folder)
    return [tok.decode(p.tolist()) for p in np.split(stream, cuts + 1)[:-1]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root)


@pytest.fixture(scope="module")
def shards(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "byte"
    prepare_text([corpus[0]], out, quiet(val_fraction=0.3, shard_tokens=500))
    return out


def test_byte_tokenizer_round_trip():
    tok = ByteTokenizer()
    s = "Test-time training: naïve 日本 ✓"
    assert tok.decode(tok.encode(s)) == s
    assert max(tok.encode(s)) < 256 and (tok.vocab_size, tok.eos_id) == (257, 256)
    assert tok.decode(tok.encode("ab") + [tok.eos_id] + tok.encode("c")) == "abc"
    assert load_tokenizer(tok.describe(), ".").describe() == tok.describe()


def test_shards_hold_every_document_once_joined_by_eos(corpus, shards):
    _, docs = corpus
    train, val = split_docs(shards, "train"), split_docs(shards, "val")
    assert sorted(train + val) == sorted(docs)
    assert train == [d for d in docs if d in set(train)], "corpus order is kept"
    assert val and not set(train) & set(val)
    meta = read_meta(shards)
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 257
    for split, s in meta["splits"].items():
        assert s["documents"] == len(split_docs(shards, split))
        assert s["tokens"] == sum(x["tokens"] for x in s["shards"])
        assert all((shards / x["file"]).stat().st_size == 2 * x["tokens"] for x in s["shards"])
    assert len(meta["splits"]["train"]["shards"]) > 1


def test_split_is_deterministic_and_seeded(corpus, shards, tmp_path):
    again = prepare_text([corpus[0]], tmp_path / "again", quiet(val_fraction=0.3, shard_tokens=500))
    for x in read_meta(shards)["splits"]["val"]["shards"]:
        assert (shards / x["file"]).read_bytes() == (again.folder / x["file"]).read_bytes()
    other = prepare_text([corpus[0]], tmp_path / "s1", quiet(val_fraction=0.3, split_seed=1))
    assert split_docs(other.folder, "val") != split_docs(shards, "val")


def test_uint32_when_asked_and_vocab_checks(corpus, tmp_path):
    res = prepare_text([corpus[0]], tmp_path / "u32", quiet(val_fraction=0.3, dtype="uint32"))
    s = res.meta["splits"]["train"]
    assert res.meta["dtype"] == "uint32"
    assert (res.folder / s["shards"][0]["file"]).stat().st_size == 4 * s["tokens"]
    assert token_dtype(65536) == "uint16" and token_dtype(65537) == "uint32"
    with pytest.raises(TokenizerError, match="70000 does not fit in uint16"):
        token_dtype(70000, "uint16")
    with pytest.raises(TokenizerError, match="does not fit in uint32"):
        token_dtype(2**32 + 1)


@needs_tokenizers
def test_large_vocab_tokenizer_file_gives_uint32(corpus, tmp_path):
    vocab = {f"w{i}": i for i in range(70000)} | {"[UNK]": 70000, "</s>": 70001}
    model = tokenizers.models.WordLevel(vocab, unk_token="[UNK]")
    tk = tokenizers.Tokenizer(model)
    tk.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tk.save(str(tmp_path / "tokenizer.json"))
    res = prepare_text(
        [corpus[0]], tmp_path / "wl", quiet(val_fraction=0.3, tokenizer=str(tmp_path))
    )
    assert res.meta["dtype"] == "uint32" and res.meta["eos_id"] == 70001
    with pytest.raises(TokenizerError, match="does not fit in uint16"):
        prepare_text([corpus[0]], tmp_path / "wl16", quiet(tokenizer=str(tmp_path), dtype="uint16"))
    assert not (tmp_path / "wl16").exists()


@needs_tokenizers
def test_bpe_trains_round_trips_and_reloads_from_meta(corpus, tmp_path):
    res = prepare_text(
        [corpus[0]], tmp_path / "bpe", quiet(tokenizer="bpe", vocab_size=300, val_fraction=0.3)
    )
    tok = text.load_shard_tokenizer(res.folder)
    assert tok.vocab_size == res.meta["vocab_size"] == 300
    s = "training a naïve video état"
    assert tok.decode(tok.encode(s)) == s
    assert len(tok.encode(s)) < len(s.encode())
    assert sorted(split_docs(res.folder, "train") + split_docs(res.folder, "val")) == sorted(
        corpus[1]
    )


def test_second_run_writes_nothing(corpus, tmp_path, capsys):
    out = tmp_path / "idem"
    opts = TextPrepOptions(progress=False, val_fraction=0.3)
    assert prepare_text([corpus[0]], out, opts).written
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert not prepare_text([corpus[0]], out, opts).written
    assert "up to date" in capsys.readouterr().out
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(FileExistsError, match="overwrite"):
        prepare_text([corpus[0]], out, quiet(val_fraction=0.5))
    assert prepare_text([corpus[0]], out, quiet(val_fraction=0.5, overwrite=True)).written


def test_interrupted_run_leaves_nothing_complete(corpus, tmp_path, monkeypatch):
    out = tmp_path / "crash"
    real_flush, calls = text.ShardWriter.flush, []

    def crash_on_second_shard(self):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated")
        real_flush(self)

    monkeypatch.setattr(text.ShardWriter, "flush", crash_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        prepare_text([corpus[0]], out, quiet(val_fraction=0.3, shard_tokens=200))
    assert list(tmp_path.iterdir()) == [], "no output and no temporary folder left"


def _bad(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


BAD_INPUTS = {
    "empty txt": ("e.txt", b"", "empty corpus"),
    "blank jsonl": ("e.jsonl", b"\n\n", "empty corpus"),
    "binary": ("bin.txt", b"abc\x00\x01\x02", "NUL bytes"),
    "invalid utf-8": (
        "latin.txt",
        "ok\nno café".encode("latin-1"),
        "line 2: not valid UTF-8 .*column 7",
    ),
    "invalid json": ("j.jsonl", b'{"text": "a"}\n{"text": "b"}\n{"text": \n', "line 3: not valid"),
    "missing field": ("m.jsonl", b'{"text": "a"}\n{"body": "b"}\n', "line 2: missing field 'text'"),
    "text not str": ("n.jsonl", b'{"text": 3}\n', "line 1: field 'text' is int"),
    "utf-8 in jsonl": ("u.jsonl", b'{"text": "a"}\n{"text": "\xff"}\n', "line 2: not valid UTF-8"),
    "unsupported suffix": ("x.csv", b"a,b\n", "unsupported file type"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_the_file(case, tmp_path):
    name, data, message = BAD_INPUTS[case]
    path = _bad(tmp_path, name, data)
    with pytest.raises(CorpusError, match=message) as err:
        prepare_text([path], tmp_path / "out", quiet())
    assert name in str(err.value) and err.value.path.endswith(name)
    assert not (tmp_path / "out").exists()


@needs_zstd
def test_corrupt_zst_names_the_file(tmp_path):
    path = _bad(tmp_path, "bad.jsonl.zst", b"this is not zstd data at all")
    with pytest.raises(CorpusError, match="bad.jsonl.zst.*cannot read"):
        prepare_text([path], tmp_path / "out", quiet())


def test_missing_path_empty_folder_and_empty_val(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        prepare_text([tmp_path / "nope"], tmp_path / "out", quiet())
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no corpus files"):
        prepare_text([tmp_path / "empty"], tmp_path / "out", quiet())
    one = _bad(tmp_path, "one.txt", b"a single document")
    with pytest.raises(CorpusError, match=r"validation split is empty: .* cut the text into"):
        prepare_text([one], tmp_path / "out", quiet(val_fraction=0.01))
    assert prepare_text([one], tmp_path / "out", quiet(val_fraction=0.0)).written


def test_blocks_shift_and_cross_shards(shards):
    ds = TokenBlockDataset(shards, "train", block_len=64)
    n = read_meta(shards)["splits"]["train"]["tokens"]
    stream = np.concatenate([np.fromfile(shards / f, dtype=np.uint16) for f in ds.files])
    assert len(ds) == (n - 1) // 64 and len(stream) == n
    for i in (0, 7, len(ds) - 1):
        x, y = ds[i]
        assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (64,)
        assert torch.equal(x, torch.from_numpy(stream[i * 64 : i * 64 + 64].astype(np.int64)))
        assert torch.equal(y[:-1], x[1:]) and y[-1] == int(stream[i * 64 + 64])
    copy = pickle.loads(pickle.dumps(ds))
    assert torch.equal(copy[5][0], ds[5][0])
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_strided_blocks_overlap_and_stay_inside_the_split(shards):
    ds = TokenBlockDataset(shards, "train", block_len=64, stride=16)
    stream = np.concatenate([np.fromfile(shards / f, dtype=np.uint16) for f in ds.files])
    n = len(stream)
    last = len(ds) - 1
    assert last * 16 + 65 <= n < (last + 1) * 16 + 65  # the last block fits, one more would not
    for i in (0, 1, last):
        x, y = ds[i]
        window = torch.from_numpy(stream[i * 16 : i * 16 + 65].astype(np.int64))
        assert torch.equal(x, window[:-1]) and torch.equal(y, window[1:])
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(ValueError, match="stride"):
        TokenBlockDataset(shards, "train", block_len=64, stride=65)


def _order(dm: TextDataModule, epoch: int, world: int = 1, rank: int = 0) -> list[int]:
    dm._replicas = lambda: (world, rank)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader.sampler)


def test_datamodule_order_is_seeded_and_ranks_are_disjoint(shards):
    dm = TextDataModule(shards, block_len=16, batch_size=4, seed=3)
    assert _order(dm, 0) == _order(TextDataModule(shards, 16, 4, seed=3), 0)
    assert _order(dm, 0) != _order(dm, 1)
    assert _order(dm, 0) != _order(TextDataModule(shards, 16, 4, seed=4), 0)
    r0, r1 = _order(dm, 2, world=2, rank=0), _order(dm, 2, world=2, rank=1)
    assert len(r0) == len(r1) and not set(r0) & set(r1)
    assert len(set(r0) | set(r1)) >= len(dm.datasets["train"]) - 1
    dm._replicas = lambda: (1, 0)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1]) and dm.vocab_size == 257
    assert list(dm.val_dataloader().sampler) == list(range(len(dm.datasets["val"])))


def test_tokenize_text_cli(corpus, tmp_path, capsys):
    """``ttt-video prepare text`` (also ``data_prep/tokenize_text.py``); both flag spellings."""
    from ttt_video.apps.prepare import text as tokenize_text

    args = ["--input", str(corpus[0]), "--out", str(tmp_path / "cli"), "--no_progress"]
    assert tokenize_text.main([*args, "--val_fraction", "0.3"]) == 0
    assert "wrote train" in capsys.readouterr().out
    assert tokenize_text.main([*args, "--val_fraction", "0.3"]) == 0
    assert "up to date" in capsys.readouterr().out
    bad = _bad(tmp_path, "bad.jsonl", b"{oops\n")
    assert tokenize_text.main(["--input", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "bad.jsonl, line 1" in capsys.readouterr().err


def _xdr_int(*values: int) -> bytes:
    return struct.pack(f">{len(values)}i", *values)


def _r_strings(values: list[str]) -> bytes:
    out = _xdr_int(16, len(values))
    for v in values:
        out += _xdr_int(9 | (8 << 12), len(v.encode())) + v.encode()
    return out


def _r_named_list(items: dict[str, bytes]) -> bytes:
    names = _xdr_int(2 | 1024, 1) + _xdr_int(9, 5) + b"names" + _r_strings(list(items))
    return _xdr_int(19 | 512, len(items)) + b"".join(items.values()) + names + _xdr_int(254)


def _r_serialize(item: bytes) -> bytes:
    return b"X\n" + _xdr_int(3, 0x040201, 0x030500, 5) + b"UTF-8" + item


def write_fake_janeaustenr(folder: Path) -> dict[str, list[str]]:
    """A janeaustenr-shaped Rdata.rdb/.rdx holding six tiny novels."""
    novels, rdb, index = {}, b"", {}
    for n, name in enumerate(austen.NOVELS):
        lines = [name.upper(), "", "VOLUME I", "", "CHAPTER I", "", f"It is {n}é.", ""]
        lines += ["Chapter 2", "", "A second chapter.", "", "CHAPTER III", "", "The end."]
        raw = _r_serialize(_r_strings(lines))
        record = struct.pack(">I", len(raw)) + zlib.compress(raw)
        index[name] = _xdr_int(13, 2, len(rdb), len(record))
        rdb += record
        novels[name] = lines
    folder.mkdir(parents=True)
    (folder / "Rdata.rdb").write_bytes(rdb)
    rdx = _r_serialize(_r_named_list({"variables": _r_named_list(index)}))
    (folder / "Rdata.rdx").write_bytes(gzip.compress(rdx))
    return novels


def test_split_chapters_keeps_all_text():
    novel = "TITLE\n\nVOLUME I\n\n\nCHAPTER I\n\nOne.\n\nVOLUME II\n\nCHAPTER II\nTwo.\nChapter 3\n"
    parts = austen.split_chapters(novel)
    assert "".join(parts) == novel and len(parts) == 3
    assert parts[0].startswith("TITLE") and parts[1].startswith("VOLUME II")


def test_build_austen_from_package_data(tmp_path):
    lines = write_fake_janeaustenr(tmp_path / "pkg")
    opts = austen.AustenOptions(
        root=tmp_path / "austen", package_data=tmp_path / "pkg", prep=quiet(val_fraction=0.3)
    )
    res = austen.build_austen(opts)
    raw = tmp_path / "austen" / "raw"
    assert (raw / "emma.txt").read_text(encoding="utf-8") == "\n".join(lines["emma"]) + "\n"
    assert res.meta["splits"]["train"]["documents"] + res.meta["splits"]["val"]["documents"] == 18
    counts = austen.novel_token_counts(tmp_path / "austen", res)
    assert all(c["chapters"] == 3 for c in counts.values())
    assert sum(c["tokens"] for c in counts.values()) == sum(
        s["tokens"] for s in res.meta["splits"].values()
    )
    assert not austen.build_austen(opts).written


AUSTEN = cache_dir("text", "austen")


@pytest.mark.skipif(
    not (AUSTEN / "byte" / "meta.json").is_file(),
    reason=f"Austen corpus absent from {AUSTEN}: run ttt-video prepare austen",
)
def test_real_austen_corpus():
    meta = read_meta(AUSTEN / "byte")
    train, val = meta["splits"]["train"], meta["splits"]["val"]
    assert train["documents"] + val["documents"] == 269, "chapters of the six novels"
    assert 3_900_000 < train["characters"] + val["characters"] < 4_100_000
    assert train["tokens"] > 3_000_000 and val["tokens"] > 100_000
    for name in austen.NOVELS:
        novel = (AUSTEN / "raw" / f"{name}.txt").read_text(encoding="utf-8")
        assert "".join(austen.split_chapters(novel)) == novel and len(novel) > 400_000
    x, _ = TokenBlockDataset(AUSTEN / "byte", "val", 2048)[0]
    sample = ByteTokenizer().decode(x.tolist())
    assert sum(c.isalpha() or c.isspace() for c in sample) > 0.9 * len(sample)
