"""Read R lazy-load databases (``Rdata.rdb`` + ``Rdata.rdx``) with the standard library only.

An R package's ``data/`` folder stores each data object as one record of the
``.rdb`` file: a 4-byte big-endian uncompressed length followed by a zlib
stream holding the object in R's serialization format (XDR, version 2 or 3).
The ``.rdx`` index is one such serialized object, compressed whole (zlib or
gzip), mapping each object's name to its ``(offset, length)`` in the ``.rdb``.

Only the types that data packages of text use are decoded: character, integer,
logical and double vectors, generic lists, pairlists (attributes) and symbols.
Anything else raises :class:`RDataError`, so a wrong answer is never returned.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

NILVALUE = 254
REFSXP = 255
SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 1, 2, 9, 10, 13, 14, 16, 19
NA_INT = -(2**31)


class RDataError(ValueError):
    """An R lazy-load database that cannot be read, naming the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class RVector:
    """A decoded R vector: its values and its attributes (e.g. ``names``)."""

    values: list
    attributes: dict[str, object] = field(default_factory=dict)


class _Reader:
    """Cursor over one serialized R object (XDR = big-endian)."""

    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source
        self.refs: list[object] = []

    def fail(self, reason: str) -> RDataError:
        return RDataError(self.source, f"{reason} (at byte {self.pos})")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise self.fail("truncated R object")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def header(self) -> None:
        if self.take(2) != b"X\n":
            raise self.fail("not an XDR R serialization (expected 'X\\n')")
        version = self.int()
        self.take(8)  # writer's R version, minimal reader version
        if version == 3:
            self.take(self.int())  # native encoding name
        elif version != 2:
            raise self.fail(f"unsupported serialization version {version}")

    def item(self) -> object:
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, bool(flags & 512), bool(flags & 1024)
        if kind == NILVALUE:
            return None
        if kind == REFSXP:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == SYMSXP:
            name = self.item()
            self.refs.append(name)
            return name
        if kind == CHARSXP:
            return self.charsxp()
        if kind == LISTSXP:
            return self.pairlist(has_attr, has_tag)
        if kind in (STRSXP, VECSXP, INTSXP, LGLSXP, REALSXP):
            values = self.vector(kind)
            attributes = self.pairlist_items() if has_attr else {}
            return RVector(values, attributes)
        raise self.fail(f"unsupported R type {kind}")

    def charsxp(self) -> str | None:
        length = self.int()
        if length == -1:
            return None
        raw = self.take(length)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    def vector(self, kind: int) -> list:
        n = self.int()
        if kind == STRSXP:
            return [self.string_element() for _ in range(n)]
        if kind == VECSXP:
            return [self.item() for _ in range(n)]
        if kind == REALSXP:
            return list(struct.unpack(f">{n}d", self.take(8 * n)))
        ints = struct.unpack(f">{n}i", self.take(4 * n))
        return [None if v == NA_INT else v for v in ints]

    def string_element(self) -> str | None:
        flags = self.int()
        if flags & 0xFF != CHARSXP:
            raise self.fail(f"expected a string element, got R type {flags & 0xFF}")
        return self.charsxp()

    def pairlist(self, has_attr: bool, has_tag: bool) -> dict[str, object]:
        """Decode a pairlist whose first cell's flags were already read."""
        out: dict[str, object] = {}
        while True:
            if has_attr:
                self.item()
            tag = self.item() if has_tag else None
            out[str(tag) if tag is not None else str(len(out))] = self.item()
            flags = self.int()
            if flags & 0xFF == NILVALUE:
                return out
            if flags & 0xFF != LISTSXP:
                raise self.fail("pairlist ends in a non-list cell")
            has_attr, has_tag = bool(flags & 512), bool(flags & 1024)

    def pairlist_items(self) -> dict[str, object]:
        value = self.item()
        if not isinstance(value, dict):
            raise self.fail("attributes are not a pairlist")
        return value


def unserialize(data: bytes, source: str = "<bytes>") -> object:
    """Decode one R-serialized (XDR) object: an :class:`RVector`, a dict (pairlist) or a str."""
    reader = _Reader(data, source)
    reader.header()
    return reader.item()


def _decompress_index(raw: bytes, path: Path) -> bytes:
    try:
        return zlib.decompress(raw, wbits=47)  # 47 = accept a zlib or a gzip header
    except zlib.error:
        pass
    try:
        return zlib.decompress(raw[4:])  # R's own framing: 4-byte length + zlib stream
    except zlib.error as err:
        raise RDataError(path, f"index is not zlib/gzip compressed ({err})") from err


def read_lazyload_index(rdx: str | Path) -> dict[str, tuple[int, int]]:
    """Return ``{object name: (offset, length)}`` in the ``.rdb`` from an ``.rdx`` file."""
    rdx = Path(rdx)
    index = unserialize(_decompress_index(rdx.read_bytes(), rdx), str(rdx))
    if not isinstance(index, RVector) or "names" not in index.attributes:
        raise RDataError(rdx, "index is not a named list")
    names = index.attributes["names"].values
    if "variables" not in names or not isinstance(index.values[names.index("variables")], RVector):
        raise RDataError(rdx, "index has no 'variables' entry")
    variables = index.values[names.index("variables")]
    keys = variables.attributes["names"].values
    return {k: (v.values[0], v.values[1]) for k, v in zip(keys, variables.values)}


def read_lazyload_object(rdb: str | Path, offset: int, length: int) -> object:
    """Decode the object stored at ``offset`` (``length`` bytes) of an ``.rdb`` file."""
    rdb = Path(rdb)
    with rdb.open("rb") as fh:
        fh.seek(offset)
        record = fh.read(length)
    if len(record) != length or length < 4:
        raise RDataError(rdb, f"record at offset {offset} is truncated")
    expected = struct.unpack(">I", record[:4])[0]
    try:
        data = zlib.decompress(record[4:])
    except zlib.error as err:
        raise RDataError(rdb, f"record at offset {offset} is not a zlib stream ({err})") from err
    if len(data) != expected:
        raise RDataError(
            rdb, f"record at offset {offset}: {len(data)} bytes, header says {expected}"
        )
    return unserialize(data, f"{rdb}@{offset}")


def read_lazyload_db(rdb: str | Path, rdx: str | Path | None = None) -> dict[str, object]:
    """Decode every object of an R lazy-load database, by name (``rdx`` defaults to ``rdb``'s)."""
    rdb = Path(rdb)
    index = read_lazyload_index(rdx if rdx is not None else rdb.with_suffix(".rdx"))
    return {name: read_lazyload_object(rdb, off, n) for name, (off, n) in index.items()}
