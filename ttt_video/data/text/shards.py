"""Tokenise a text corpus into memory-mapped token shards with a train/validation split.

Output folder layout (everything a training run needs, nothing else)::

    meta.json                   tokenizer description, dtype, counts, shard list, sources
    train_00000.bin, ...        flat token ids (uint16 when the vocab fits, else uint32)
    val_00000.bin, ...
    tokenizer.json              only for BPE / tokenizer-file tokenizers

Each split is one stream: every document's ids followed by EOS, documents in
corpus order, cut into shards of ``shard_tokens`` (a document may straddle two
shards; readers treat a split's shards as one array). A document goes to
validation when a keyed hash of its text falls below ``val_fraction``: the
split is deterministic, independent of file order, and duplicated documents
land on the same side.

Writing streams: one shard buffer per split plus one batch of documents is all
that is held in memory. The folder is built under a hidden temporary name and
renamed when complete, so a folder with ``meta.json`` is always whole; a re-run
with the same inputs and options finds the fingerprint in ``meta.json`` and
writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ttt_video.data.text.corpus import CorpusError, Document, iter_corpus, list_corpus_files
from ttt_video.data.text.tokenizers import (
    ByteTokenizer,
    Tokenizer,
    TokenizerError,
    load_tokenizer,
    load_tokenizer_file,
    train_bpe,
)
from ttt_video.io_utils import write_json
from ttt_video.validation import check_positive

FORMAT = "ttt_video.token_shards/1"
META_FILE = "meta.json"
SPLITS = ("train", "val")
DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


@dataclass
class TextPrepOptions:
    """How to tokenise a corpus.

    Attributes:
        tokenizer: ``"byte"``, ``"bpe"`` (trained on the train split), or the path
            of a ``tokenizer.json`` / HuggingFace tokenizer folder.
        vocab_size: BPE vocabulary size, EOS included (``bpe`` only).
        val_fraction: expected fraction of documents held out for validation, in [0, 1).
        split_seed: key of the document hash that decides the split.
        shard_tokens: tokens per shard file (also the write buffer per split).
        dtype: ``"uint16"``, ``"uint32"`` or None for the smallest that holds the vocab.
        text_field: JSONL field holding the document text.
        batch_docs: documents sent to the tokenizer at once.
        overwrite: replace an output folder made from other inputs or options.
        progress: show a progress bar.
        verbose: print what was written (or that nothing needed writing).
    """

    tokenizer: str = "byte"
    vocab_size: int = 8192
    val_fraction: float = 0.01
    split_seed: int = 0
    shard_tokens: int = 1 << 25
    dtype: str | None = None
    text_field: str = "text"
    batch_docs: int = 64
    overwrite: bool = False
    progress: bool = True
    verbose: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        check_positive(self, "shard_tokens", "batch_docs", integer=True)
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)} or None, got {self.dtype!r}")

    def fingerprinted(self) -> dict:
        """The options that change the output (not overwrite/progress/verbose)."""
        keep = ("tokenizer", "val_fraction", "split_seed", "shard_tokens", "dtype", "text_field")
        out = {k: getattr(self, k) for k in keep}
        if self.tokenizer == "bpe":
            out["vocab_size"] = self.vocab_size
        return out


@dataclass
class TextPrepResult:
    """What :func:`prepare_text` produced: the folder, its metadata, and whether it wrote."""

    folder: Path
    meta: dict
    written: bool


def is_validation(text: str, val_fraction: float, seed: int) -> bool:
    """True when the document ``text`` belongs to the validation split (keyed 64-bit hash)."""
    if val_fraction <= 0.0:
        return False
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(digest, "big") < val_fraction * 2**64


def token_dtype(vocab_size: int, requested: str | None = None) -> str:
    """Name of the dtype for ids ``0..vocab_size-1``: ``requested`` if it fits, else the smallest."""
    if requested is not None:
        if vocab_size - 1 > np.iinfo(DTYPES[requested]).max:
            raise TokenizerError(f"vocab size {vocab_size} does not fit in {requested}")
        return requested
    for name, dtype in DTYPES.items():
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return name
    raise TokenizerError(f"vocab size {vocab_size} does not fit in uint32")


def _sources(files: list[Path]) -> list[dict]:
    out = []
    for path in files:
        stat = path.stat()
        out.append(
            {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        )
    return out


def _fingerprint(files: list[Path], options: TextPrepOptions) -> str:
    state = {"format": FORMAT, "sources": _sources(files), "options": options.fingerprinted()}
    if options.tokenizer not in ("byte", "bpe"):
        path = Path(options.tokenizer)
        file = path / "tokenizer.json" if path.is_dir() else path
        state["tokenizer_sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def make_tokenizer(options: TextPrepOptions, files: list[Path]) -> Tokenizer:
    """Build the tokenizer ``options.tokenizer`` names (training a BPE on the train split)."""
    if options.tokenizer == "byte":
        return ByteTokenizer()
    if options.tokenizer == "bpe":
        texts = (
            d.text
            for d in iter_corpus(files, options.text_field)
            if not is_validation(d.text, options.val_fraction, options.split_seed)
        )
        return train_bpe(texts, options.vocab_size)
    return load_tokenizer_file(options.tokenizer)


class ShardWriter:
    """Append token ids to one split, flushing ``shard_tokens``-sized ``.bin`` files."""

    def __init__(self, folder: Path, split: str, dtype: str, shard_tokens: int):
        self.folder, self.split = folder, split
        self.buffer = np.empty(shard_tokens, dtype=DTYPES[dtype])
        self.fill = 0
        self.shards: list[dict] = []
        self.tokens = self.documents = self.characters = 0

    def add(self, ids: np.ndarray, characters: int) -> None:
        """Append one document's ids ``[n]`` (EOS already included)."""
        self.documents += 1
        self.characters += characters
        self.tokens += len(ids)
        start = 0
        while start < len(ids):
            take = min(len(ids) - start, len(self.buffer) - self.fill)
            self.buffer[self.fill : self.fill + take] = ids[start : start + take]
            self.fill += take
            start += take
            if self.fill == len(self.buffer):
                self.flush()

    def flush(self) -> None:
        """Write the buffered ids as the next shard file (nothing when empty)."""
        if self.fill == 0:
            return
        name = f"{self.split}_{len(self.shards):05d}.bin"
        self.buffer[: self.fill].tofile(self.folder / name)
        self.shards.append({"file": name, "tokens": self.fill})
        self.fill = 0

    def stats(self) -> dict:
        """Counts and shard list for ``meta.json``."""
        return {
            "tokens": self.tokens,
            "documents": self.documents,
            "characters": self.characters,
            "shards": self.shards,
        }


def _batches(docs: Iterator[Document], size: int) -> Iterator[list[Document]]:
    while batch := list(islice(docs, size)):
        yield batch


def _write_splits(
    files: list[Path], tokenizer: Tokenizer, folder: Path, options: TextPrepOptions
) -> dict[str, ShardWriter]:
    """Stream the corpus through ``tokenizer`` into one :class:`ShardWriter` per split."""
    dtype = token_dtype(tokenizer.vocab_size, options.dtype)
    writers = {s: ShardWriter(folder, s, dtype, options.shard_tokens) for s in SPLITS}
    eos = np.array([tokenizer.eos_id], dtype=np.int64)
    bar = tqdm(unit="tok", unit_scale=True, disable=not options.progress, desc="tokenising")
    with bar:
        for batch in _batches(iter_corpus(files, options.text_field), options.batch_docs):
            encoded = tokenizer.encode_batch([d.text for d in batch])
            for doc, ids in zip(batch, encoded):
                if ids.size and (ids.min() < 0 or ids.max() >= tokenizer.vocab_size):
                    raise TokenizerError(
                        f"{doc.source}: tokenizer {tokenizer.name!r} produced ids outside "
                        f"[0, {tokenizer.vocab_size})"
                    )
                val = is_validation(doc.text, options.val_fraction, options.split_seed)
                writers["val" if val else "train"].add(np.concatenate([ids, eos]), len(doc.text))
                bar.update(len(ids) + 1)
            bar.set_postfix(file=batch[-1].source.name, refresh=False)
    for writer in writers.values():
        writer.flush()
    return writers


def _check_splits(writers: dict[str, ShardWriter], files: list[Path], val_fraction: float) -> None:
    where = files[0] if len(files) == 1 else None
    total = sum(w.documents for w in writers.values())
    if total == 0:
        names = ", ".join(str(f) for f in files[:5]) + (" ..." if len(files) > 5 else "")
        raise CorpusError(where, f"empty corpus: no non-empty documents in {names}")
    few = (
        " (whole documents go to one split, and each .txt file is one document: cut the text "
        "into many files, or give a .jsonl with one document per line)"
        if total < 20
        else ""
    )
    if writers["train"].tokens == 0:
        raise CorpusError(
            where, f"all {total} documents went to validation; lower val_fraction{few}"
        )
    if val_fraction > 0 and writers["val"].tokens == 0:
        raise CorpusError(
            where,
            f"validation split is empty: none of {total} documents hashed below "
            f"val_fraction={val_fraction}; raise it, add documents, or use 0{few}",
        )


def _build(files: list[Path], folder: Path, options: TextPrepOptions, fingerprint: str) -> dict:
    """Write shards, tokenizer files and ``meta.json`` (last) into ``folder``."""
    start = time.perf_counter()
    tokenizer = make_tokenizer(options, files)
    writers = _write_splits(files, tokenizer, folder, options)
    _check_splits(writers, files, options.val_fraction)
    tokenizer.save(folder)
    meta = {
        "format": FORMAT,
        "tokenizer": tokenizer.describe(),
        "vocab_size": tokenizer.vocab_size,
        "eos_id": tokenizer.eos_id,
        "dtype": token_dtype(tokenizer.vocab_size, options.dtype),
        "splits": {s: w.stats() for s, w in writers.items()},
        "sources": _sources(files),
        "options": options.fingerprinted(),
        "val_fraction": options.val_fraction,
        "fingerprint": fingerprint,
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_json(folder / META_FILE, meta)
    return meta


def read_meta(folder: str | Path) -> dict:
    """The ``meta.json`` of a complete shard folder (FileNotFoundError when incomplete/absent)."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {META_FILE}; not a complete token-shard folder")
    return json.loads(path.read_text(encoding="utf-8"))


def load_shard_tokenizer(folder: str | Path) -> Tokenizer:
    """Re-create the tokenizer a shard folder was made with (from its ``meta.json``)."""
    return load_tokenizer(read_meta(folder)["tokenizer"], folder)


def _existing_is_current(out: Path, fingerprint: str, overwrite: bool) -> dict | None:
    """The metadata of ``out`` when it already matches ``fingerprint``; raise if it is in the way."""
    if not out.exists():
        return None
    if (out / META_FILE).is_file():
        meta = read_meta(out)
        if meta.get("fingerprint") == fingerprint:
            return meta
    if not overwrite and any(out.iterdir()):
        raise FileExistsError(
            f"{out}: exists and was made from other inputs or options; pass overwrite=True "
            "(--overwrite) to replace it"
        )
    return None


def prepare_text(
    inputs: list[str | Path], out: str | Path, options: TextPrepOptions | None = None
) -> TextPrepResult:
    """Tokenise the corpus ``inputs`` (files/folders) into the shard folder ``out``.

    Returns the folder, its metadata and ``written=False`` when ``out`` was
    already up to date. See the module docstring for the layout and guarantees.
    """
    options = options or TextPrepOptions()
    out = Path(out)
    files = list_corpus_files(inputs)
    fingerprint = _fingerprint(files, options)
    meta = _existing_is_current(out, fingerprint, options.overwrite)
    if meta is not None:
        if options.verbose:
            print(f"{out}: up to date ({_summary(meta)}); nothing written")
        return TextPrepResult(out, meta, written=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        meta = _build(files, tmp, options, fingerprint)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if options.verbose:
        rate = sum(s["tokens"] for s in meta["splits"].values()) / max(meta["seconds"], 1e-9)
        print(f"{out}: wrote {_summary(meta)} in {meta['seconds']:.1f} s ({rate:,.0f} tok/s)")
    return TextPrepResult(out, meta, written=True)


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` folder to ``out``, replacing an old ``out``."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def _summary(meta: dict) -> str:
    parts = []
    for split, s in meta["splits"].items():
        parts.append(f"{split} {s['tokens']:,} tokens / {s['documents']:,} docs")
    return f"{', '.join(parts)}; tokenizer {meta['tokenizer']['kind']}, {meta['dtype']}"
