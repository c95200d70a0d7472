"""The offline "books" corpus: Jane Austen's six novels from Debian's ``r-cran-janeaustenr``.

Steps, each idempotent (a step whose output is complete is skipped):

1. ``apt-get download`` the package into a temporary folder and ``dpkg-deb -x``
   it (no install, no R): :func:`fetch_austen_package`.
2. Decode ``data/Rdata.rdb``/``.rdx`` (one character vector of lines per novel)
   with :mod:`ttt_video.data.text.rdata` and write ``raw/<novel>.txt``, one file per
   novel, plus ``raw/manifest.json``: :func:`write_raw_novels`.
3. Cut each novel into chapters and write ``chapters/austen_chapters.jsonl``,
   one document per chapter (``text``, ``novel``, ``chapter``):
   :func:`write_chapter_documents`. Six novels are too few to hold out whole
   books, so the documents are the 269 chapters; the title page and front
   matter belong to chapter 1 and a "VOLUME" heading to the chapter it opens,
   so the chapters of a novel concatenate back to the whole novel.
4. Tokenise the chapters with :func:`ttt_video.data.text.shards.prepare_text`: the
   keyed-hash split holds out whole chapters (10% by default), so both splits
   hold text of every kind.

Everything lives under ``cache_dir("text", "austen")``.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ttt_video.data.text.rdata import RVector, read_lazyload_db
from ttt_video.data.text.shards import (
    TextPrepOptions,
    TextPrepResult,
    is_validation,
    load_shard_tokenizer,
    prepare_text,
)
from ttt_video.io_utils import write_atomic, write_json
from ttt_video.paths import cache_dir

PACKAGE = "r-cran-janeaustenr"
DATA_SUBDIR = Path("usr/lib/R/site-library/janeaustenr/data")
NOVELS = (
    "sensesensibility",
    "prideprejudice",
    "mansfieldpark",
    "emma",
    "northangerabbey",
    "persuasion",
)
CHAPTERS_FILE = "austen_chapters.jsonl"
MANIFEST = "manifest.json"
_CHAPTER = re.compile(r"^chapter\s+[0-9ivxlc]+\b", re.IGNORECASE)
_VOLUME = re.compile(r"^volume\s+[0-9ivxlc]+\b", re.IGNORECASE)


class AustenError(RuntimeError):
    """The Austen package could not be fetched or decoded, with the reason."""


@dataclass
class AustenOptions:
    """How to build the Austen corpus.

    Attributes:
        root: corpus folder; None means ``cache_dir("text", "austen")``.
        package_data: an already extracted ``.../janeaustenr/data`` folder; None downloads it.
        prep: tokenisation options (byte-level, 10% of chapters held out, by default).
    """

    root: Path | None = None
    package_data: Path | None = None
    prep: TextPrepOptions | None = None

    def resolved_prep(self) -> TextPrepOptions:
        """``prep``, or the default: byte-level with ``val_fraction=0.1``."""
        return self.prep or TextPrepOptions(val_fraction=0.1)


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as err:
        raise AustenError(f"{cmd[0]} not found: this step needs a Debian-based system") from err


def fetch_austen_package(workdir: Path) -> Path:
    """Download and unpack ``r-cran-janeaustenr`` into ``workdir``; return its ``data`` folder."""
    result = _run(["apt-get", "download", PACKAGE], workdir)
    if result.returncode != 0:
        _run(["apt-get", "update"], workdir)
        result = _run(["apt-get", "download", PACKAGE], workdir)
    debs = sorted(workdir.glob(f"{PACKAGE}_*.deb"))
    if result.returncode != 0 or not debs:
        raise AustenError(f"apt-get download {PACKAGE} failed: {result.stderr.strip()[-500:]}")
    unpacked = workdir / "unpacked"
    result = _run(["dpkg-deb", "-x", str(debs[-1]), str(unpacked)], workdir)
    data = unpacked / DATA_SUBDIR
    if result.returncode != 0 or not (data / "Rdata.rdb").is_file():
        raise AustenError(f"dpkg-deb -x {debs[-1].name} gave no {DATA_SUBDIR}/Rdata.rdb")
    return data


def read_novels(package_data: Path) -> dict[str, str]:
    """Decode the package's ``Rdata.rdb``/``.rdx`` into ``{novel: text}`` (lines joined by newlines)."""
    objects = read_lazyload_db(Path(package_data) / "Rdata.rdb")
    novels = {}
    for name in NOVELS:
        vector = objects.get(name)
        if not isinstance(vector, RVector) or not all(isinstance(v, str) for v in vector.values):
            raise AustenError(f"{package_data}: {name!r} is missing or not a character vector")
        novels[name] = "\n".join(vector.values) + "\n"
    return novels


def split_chapters(text: str) -> list[str]:
    """Cut a novel into chapters; ``"".join(split_chapters(t)) == t``.

    A chapter starts at a "CHAPTER n" / "Chapter n" line, or at a "VOLUME n"
    line just above it (blank lines between); text before the first chapter
    stays with the first chapter.
    """
    lines = text.splitlines(keepends=True)
    starts = []
    for i, line in enumerate(lines):
        if _CHAPTER.match(line):
            j = i - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            starts.append(j if j >= 0 and _VOLUME.match(lines[j]) else i)
    cuts = [0] + starts[1:] + [len(lines)]
    return ["".join(lines[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]


def write_raw_novels(raw_dir: Path, package_data: Path | None = None) -> dict:
    """Write ``raw_dir/<novel>.txt`` and ``manifest.json`` unless already complete.

    Downloads the package into a temporary folder when ``package_data`` is None.
    Returns the manifest: ``{novel: {"file", "characters", "lines", "sha256"}}``.
    """
    manifest_path = raw_dir / MANIFEST
    if manifest_path.is_file():
        return json.loads(manifest_path.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="austen-") as tmp:
        novels = read_novels(package_data or fetch_austen_package(Path(tmp)))
    raw_dir.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, text in novels.items():
        write_atomic(raw_dir / f"{name}.txt", text)
        manifest[name] = {
            "file": f"{name}.txt",
            "characters": len(text),
            "lines": text.count("\n"),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        }
    write_json(manifest_path, manifest)
    return manifest


def write_chapter_documents(raw_dir: Path, out_file: Path) -> int:
    """Write one JSONL record per chapter of every raw novel (unless present); return the count."""
    if out_file.is_file():
        return sum(1 for _ in out_file.open(encoding="utf-8"))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    records = []
    for name in NOVELS:
        text = (raw_dir / f"{name}.txt").read_text(encoding="utf-8")
        for k, chapter in enumerate(split_chapters(text), start=1):
            records.append(json.dumps({"text": chapter, "novel": name, "chapter": k}))
    write_atomic(out_file, "\n".join(records) + "\n")
    return len(records)


def shard_folder_name(prep: TextPrepOptions) -> str:
    """Name of the shard folder for a tokenizer: ``byte``, ``bpe<V>`` or the tokenizer's name."""
    if prep.tokenizer in ("byte", "bpe"):
        return "byte" if prep.tokenizer == "byte" else f"bpe{prep.vocab_size}"
    return (
        Path(prep.tokenizer).stem if Path(prep.tokenizer).is_file() else Path(prep.tokenizer).name
    )


def build_austen(options: AustenOptions | None = None) -> TextPrepResult:
    """Fetch, decode, split and tokenise the Austen corpus; return the shard folder's result.

    Layout under the root: ``raw/<novel>.txt``, ``chapters/austen_chapters.jsonl``
    and ``<tokenizer>/`` (e.g. ``byte/``) holding the token shards.
    """
    options = options or AustenOptions()
    root = Path(options.root) if options.root else cache_dir("text", "austen")
    write_raw_novels(root / "raw", options.package_data)
    chapters = root / "chapters" / CHAPTERS_FILE
    write_chapter_documents(root / "raw", chapters)
    prep = options.resolved_prep()
    return prepare_text([chapters], root / shard_folder_name(prep), prep)


def novel_token_counts(root: Path, result: TextPrepResult) -> dict[str, dict[str, int]]:
    """Per novel: characters, chapters and tokens (EOS per chapter included) under the shards'
    tokenizer, and how many of its chapters went to validation."""
    tokenizer = load_shard_tokenizer(result.folder)
    options = result.meta["options"]
    counts: dict[str, dict[str, int]] = {}
    for line in (root / "chapters" / CHAPTERS_FILE).open(encoding="utf-8"):
        record = json.loads(line)
        row = counts.setdefault(
            record["novel"], {"characters": 0, "chapters": 0, "tokens": 0, "val_chapters": 0}
        )
        row["characters"] += len(record["text"])
        row["chapters"] += 1
        row["tokens"] += len(tokenizer.encode(record["text"])) + 1
        row["val_chapters"] += is_validation(
            record["text"], options["val_fraction"], options["split_seed"]
        )
    return counts
