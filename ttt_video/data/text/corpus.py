"""Stream documents out of a text corpus: ``.txt``, Pile-style ``.jsonl`` and ``.jsonl.zst``.

A corpus is a list of files and folders. Folders are searched recursively and
their supported files are read in sorted order of their relative path. Each
``.txt`` file is one document; each non-blank line of a ``.jsonl`` file is one
JSON object whose text field (``"text"`` by default) is one document. Reading
streams: at most one document (a ``.txt`` file or a JSONL line) is in memory.

Every problem raises :class:`CorpusError` naming the file (and line).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".txt", ".jsonl", ".jsonl.zst")


class CorpusError(ValueError):
    """A corpus that cannot be read: names the file (and line) and the reason."""

    def __init__(self, path: str | Path | None, reason: str, line: int | None = None):
        where = "corpus" if path is None else str(path)
        if line is not None:
            where = f"{where}, line {line}"
        super().__init__(f"{where}: {reason}")
        self.path = None if path is None else str(path)
        self.line = line
        self.reason = reason


@dataclass(frozen=True)
class Document:
    """One document: its text, the file it came from and its 1-based line (0 for ``.txt``)."""

    text: str
    source: Path
    line: int


def corpus_kind(path: Path) -> str | None:
    """Return the supported suffix of ``path`` (``.txt``, ``.jsonl``, ``.jsonl.zst``) or None."""
    name = path.name.lower()
    return next((s for s in sorted(SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def list_corpus_files(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders into the ordered list of corpus files.

    A folder contributes its supported files (recursively, hidden ones skipped)
    sorted by relative path; a file named explicitly must have a supported suffix.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = [
                p
                for p in path.rglob("*")
                if p.is_file() and corpus_kind(p) and not _hidden(p.relative_to(path))
            ]
            files.extend(sorted(found, key=lambda p: p.relative_to(path).as_posix()))
        elif path.is_file():
            if corpus_kind(path) is None:
                raise CorpusError(path, f"unsupported file type (expected one of {SUFFIXES})")
            files.append(path)
        else:
            raise CorpusError(path, "no such file or folder")
    if not files:
        raise CorpusError(None, f"no corpus files ({', '.join(SUFFIXES)}) in {list(inputs)}")
    return files


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def iter_documents(path: Path, text_field: str = "text") -> Iterator[Document]:
    """Yield the non-empty documents of one corpus file, in file order."""
    kind = corpus_kind(path)
    if kind == ".txt":
        text = _read_txt(path)
        if text:
            yield Document(text, path, 0)
        return
    if kind is None:
        raise CorpusError(path, f"unsupported file type (expected one of {SUFFIXES})")
    with path.open("rb") as raw:
        if kind == ".jsonl.zst":
            stream, read_errors = _zstd_reader(raw, path)
        else:
            stream, read_errors = raw, (OSError,)
        yield from _iter_jsonl(stream, path, text_field, read_errors)


def _read_txt(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data:
        raise CorpusError(path, "not a text file (contains NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        reason = (
            f"not valid UTF-8 (byte {err.start}, column {column}); convert the file first, for"
            " a Latin-1 text: iconv -f latin1 -t utf-8 IN > OUT"
        )
        raise CorpusError(path, reason, line) from err


def _zstd_reader(
    raw: io.BufferedReader, path: Path
) -> tuple[io.BufferedReader, tuple[type[Exception], ...]]:
    """Wrap ``raw`` in a decompressing reader; also return the errors that reader raises."""
    try:
        import zstandard
    except ImportError as err:
        raise CorpusError(
            path, "reading .jsonl.zst needs the 'zstandard' package: pip install zstandard"
        ) from err
    # The Pile's shards were written with long windows: allow up to 2 GiB.
    reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(raw)
    return io.BufferedReader(reader, buffer_size=1 << 20), (zstandard.ZstdError, OSError)


def _iter_jsonl(
    stream: io.BufferedIOBase, path: Path, field: str, read_errors: tuple[type[Exception], ...]
) -> Iterator[Document]:
    line_no = 0
    try:
        for line_no, raw_line in enumerate(stream, start=1):
            if not raw_line.strip():
                continue
            text = _parse_jsonl_line(raw_line, path, line_no, field)
            if text:
                yield Document(text, path, line_no)
    except read_errors as err:
        raise CorpusError(path, f"cannot read ({type(err).__name__}: {err})", line_no + 1) from err


def _parse_jsonl_line(raw_line: bytes, path: Path, line_no: int, field: str) -> str:
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(path, f"not valid UTF-8 (byte {err.start})", line_no) from err
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise CorpusError(path, f"not valid JSON ({err.msg})", line_no) from err
    if not isinstance(record, dict) or field not in record:
        raise CorpusError(path, f"missing field {field!r}", line_no)
    text = record[field]
    if not isinstance(text, str):
        raise CorpusError(path, f"field {field!r} is {type(text).__name__}, not a string", line_no)
    return text


def iter_corpus(files: list[Path], text_field: str = "text") -> Iterator[Document]:
    """Yield the documents of every file in order (see :func:`iter_documents`)."""
    for path in files:
        yield from iter_documents(path, text_field)
