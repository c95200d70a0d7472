"""Tokenizers behind one small interface, and their description for a shard folder's metadata.

Three kinds, all offline:

- ``byte``: the UTF-8 bytes (ids 0..255) plus EOS = 256; vocab 257. The default.
- ``bpe``: a byte-level BPE trained on the corpus with the ``tokenizers`` package.
- a local ``tokenizer.json`` file or a HuggingFace tokenizer folder holding one
  (e.g. Llama-2's, vocab 32000). Nothing is ever downloaded.

``tokenizer.describe()`` returns a JSON-able dict; :func:`load_tokenizer`
re-creates the tokenizer from it and the folder it was saved into, so a model
run rebuilds exactly the tokenizer its shards were made with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

BPE_EOS = "<|endoftext|>"
TOKENIZER_FILE = "tokenizer.json"
EOS_CANDIDATES = ("</s>", "<|endoftext|>", "<eos>", "<|end_of_text|>", "[SEP]")


class TokenizerError(ValueError):
    """A tokenizer that cannot be built or loaded, with the reason."""


class Tokenizer:
    """Interface: ``encode(str) -> list[int]``, ``decode(ids) -> str``, ``vocab_size``,
    ``eos_id``, ``name``, ``describe()`` and ``save(folder)``."""

    name: str
    vocab_size: int
    eos_id: int

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no EOS added)."""
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; EOS decodes to nothing."""
        raise NotImplementedError

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids of each text as int64 arrays ``[n_i]`` (no EOS added)."""
        return [np.asarray(self.encode(t), dtype=np.int64) for t in texts]

    def describe(self) -> dict:
        """JSON-able description that :func:`load_tokenizer` turns back into this tokenizer."""
        raise NotImplementedError

    def save(self, folder: Path) -> None:
        """Write the files :func:`load_tokenizer` needs into ``folder`` (none by default)."""


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as ids 0..255, EOS = 256 (vocab 257)."""

    name = "byte"
    vocab_size = 257
    eos_id = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int64) for t in texts]

    def decode(self, ids: Iterable[int]) -> str:
        data = bytes(i for i in ids if i != self.eos_id)
        return data.decode("utf-8", errors="replace")

    def describe(self) -> dict:
        return {"kind": "byte", "vocab_size": self.vocab_size, "eos_id": self.eos_id}


def _require_tokenizers():
    try:
        import tokenizers
    except ImportError as err:
        raise TokenizerError(
            "this tokenizer needs the 'tokenizers' package: pip install tokenizers"
        ) from err
    return tokenizers


class HFTokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer`` (from a ``tokenizer.json``) with a named EOS token."""

    def __init__(self, tokenizer, eos_token: str, name: str):
        eos_id = tokenizer.token_to_id(eos_token)
        if eos_id is None:
            raise TokenizerError(f"tokenizer {name!r} has no EOS token {eos_token!r}")
        self.tokenizer = tokenizer
        self.eos_token = eos_token
        self.eos_id = eos_id
        self.name = name
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encodings]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids if i != self.eos_id])

    def describe(self) -> dict:
        return {
            "kind": "hf",
            "name": self.name,
            "file": TOKENIZER_FILE,
            "eos_token": self.eos_token,
            "vocab_size": self.vocab_size,
            "eos_id": self.eos_id,
        }

    def save(self, folder: Path) -> None:
        self.tokenizer.save(str(Path(folder) / TOKENIZER_FILE))


def train_bpe(texts: Iterable[str], vocab_size: int) -> HFTokenizer:
    """Train a byte-level BPE of ``vocab_size`` tokens (EOS included) on ``texts``."""
    tk = _require_tokenizers()
    alphabet = tk.pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 1:
        raise TokenizerError(f"BPE vocab_size {vocab_size} < {len(alphabet) + 1} (bytes + EOS)")
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BPE_EOS],
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return HFTokenizer(tokenizer, BPE_EOS, name=f"bpe{vocab_size}")


def _eos_from_config(folder: Path) -> str | None:
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    eos = json.loads(config.read_text(encoding="utf-8")).get("eos_token")
    return eos.get("content") if isinstance(eos, dict) else eos


def load_tokenizer_file(path: str | Path, eos_token: str | None = None) -> HFTokenizer:
    """Load a local ``tokenizer.json`` or a HuggingFace tokenizer folder holding one.

    The EOS token is ``eos_token`` if given, else the folder's
    ``tokenizer_config.json`` ``eos_token``, else the first of
    :data:`EOS_CANDIDATES` in the vocabulary.
    """
    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        raise TokenizerError(f"{path}: no tokenizer file (expected a {TOKENIZER_FILE})")
    tk = _require_tokenizers()
    try:
        tokenizer = tk.Tokenizer.from_file(str(file))
    except Exception as err:  # the Rust side raises a bare Exception on a bad file
        raise TokenizerError(f"{file}: not a valid tokenizer file ({err})") from err
    eos = eos_token or _eos_from_config(file.parent)
    if eos is None:
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        eos = next((c for c in EOS_CANDIDATES if c in vocab), None)
    if eos is None:
        raise TokenizerError(f"{file}: cannot tell the EOS token; pass eos_token")
    return HFTokenizer(tokenizer, eos, name=file.parent.name if path.is_dir() else file.stem)


def load_tokenizer(description: dict, folder: str | Path) -> Tokenizer:
    """Re-create a tokenizer from its :meth:`Tokenizer.describe` dict and the folder it was saved in.

    ``folder`` is usually a token-shard folder, whose ``meta.json`` holds the description.
    """
    kind = description.get("kind")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "hf":
        tok = load_tokenizer_file(Path(folder) / description["file"], description["eos_token"])
        tok.name = description.get("name", tok.name)
        if (tok.vocab_size, tok.eos_id) != (description["vocab_size"], description["eos_id"]):
            raise TokenizerError(f"{folder}: tokenizer file does not match its description")
        return tok
    raise TokenizerError(f"unknown tokenizer kind {kind!r} in {folder}")
