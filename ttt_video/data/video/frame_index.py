"""The frame index of a video file, built once per file: the one frame-numbering rule of every reader.

Letters: N frames in the file.

**The rule.** Frame ``i`` is the ``i``-th frame in presentation order: the packets of the video
stream are demuxed (no decoding, so cheap), those that carry a frame are sorted by presentation
timestamp, and ``times[i]`` is frame ``i``'s timestamp in seconds from the first frame. Every
reader path (``VideoReader`` with any backend, ``stream_video``) numbers frames by this index, so
a ``ClipSpec`` selects the same frames everywhere, whatever the keyframe spacing, B-frame
reordering, frame-rate changes or frame count the container header claims.

**Built once per file.** ``frame_index(path)`` keeps the indices it built in this process (an LRU
bounded by ``CACHE_FRAMES`` frames, keyed by path, size and modification time: each DataLoader
worker builds a file's index at most once). When a folder above the file holds an index folder
(``INDEX_DIR``, which ``ttt-video prepare index ROOT`` makes in ROOT), the index is also read
from and written to ``ROOT/.frame_index/<path under ROOT>.npz``; an entry whose video changed size
or modification time since it was written is rebuilt and rewritten.
"""

from __future__ import annotations

import array
import json
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import av
import numpy as np

from ttt_video.data.video.errors import VideoReadError
from ttt_video.io_utils import atomic_open

# Name of the folder of on-disk indices, at the root of a folder of videos.
INDEX_DIR = ".frame_index"
# Most frames the in-process cache holds over all files (17 bytes each: about 70 MB).
CACHE_FRAMES = 1 << 22
# Version of the on-disk format; entries of another version are rebuilt.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as measured (not as the header claims).

    Attributes:
        path: the file.
        num_frames: frames found in the file (packets that carry a frame).
        fps: frame rate (the header's when it agrees with the timestamps within 1%, else measured).
        duration: seconds covered by the frames (last timestamp - first + one frame).
        width, height: frame size in pixels.
        codec: decoder name, e.g. ``"h264"``.
        header_frames: the frame count the container header claims, or None when it has none.
        truncated: the file ends before its header says it should, or decoding failed part-way.
    """

    path: str
    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    codec: str
    header_frames: int | None = None
    truncated: bool = False


@dataclass(frozen=True)
class FrameIndex:
    """Every frame of one file in presentation order (see the module docstring).

    Attributes:
        info: the measured ``VideoInfo``.
        pts: int64 ``[N]``, sorted presentation timestamps in the stream's time base (``0..N-1``
            when the file gives none).
        keyframes: bool ``[N]``, whether frame ``i``'s packet is a keyframe.
        times: float64 ``[N]``, seconds from the first frame.
        seekable: the timestamps are real, so seeking to ``pts[i]`` is possible.
    """

    info: VideoInfo
    pts: np.ndarray
    keyframes: np.ndarray
    times: np.ndarray
    seekable: bool

    def frame_at(self, pts: int | None) -> int | None:
        """The index of the frame with presentation timestamp ``pts``, or None when none has it."""
        if pts is None or not self.seekable:
            return None
        k = int(np.searchsorted(self.pts, pts))
        return k if k < len(self.pts) and self.pts[k] == pts else None

    @cached_property
    def keyframe_indices(self) -> np.ndarray:
        """int64 ``[K]``: the frames whose packets are keyframes, ascending."""
        return np.flatnonzero(self.keyframes)

    def keyframe_before(self, i: int) -> int:
        """The last keyframe at or before frame ``i`` (0 when there is none)."""
        j = int(np.searchsorted(self.keyframe_indices, i, side="right")) - 1
        return int(self.keyframe_indices[j]) if j >= 0 else 0


def check_file(path: str | Path) -> os.stat_result:
    """``os.stat`` of ``path``, raising ``VideoReadError`` when it is missing, a folder or empty."""
    p = Path(path)
    try:
        stat = p.stat()
    except FileNotFoundError:
        raise VideoReadError(p, "file not found") from None
    if p.is_dir():
        raise VideoReadError(p, "is a directory, not a video file")
    if stat.st_size == 0:
        raise VideoReadError(p, "empty file (0 bytes)")
    return stat


def open_container(path: str | Path) -> av.container.InputContainer:
    """Open ``path`` with PyAV, mapping every failure to a ``VideoReadError`` with its reason."""
    check_file(path)
    try:
        return av.open(str(path))
    except av.error.FFmpegError as err:
        raise VideoReadError(path, f"not a readable video container ({err.strerror})") from err


def video_stream(container: av.container.InputContainer, path: str | Path) -> av.VideoStream:
    """The first video stream of ``container``, checked to have a decoder; threaded decoding."""
    if not container.streams.video:
        raise VideoReadError(path, "no video stream in the file")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.name:
        raise VideoReadError(path, "unsupported codec: no decoder for the video stream")
    stream.thread_type = "AUTO"
    return stream


def looks_truncated(container, stream, found: int, seconds: float, fps: float) -> bool:
    """Whether ``found`` frames covering ``seconds`` fall short of what the header claims.

    A claimed duration wins over a claimed frame count: AVI headers count dropped frames, so
    a file can hold fewer frames than its header says and still cover its whole duration.
    """
    claimed = None
    if stream.duration:
        claimed = float(stream.duration * stream.time_base)
    elif container.duration and len(container.streams) == 1:
        claimed = container.duration / 1e6
    if claimed is not None:
        return seconds < claimed - max(2.0 / fps, 0.01 * claimed)
    return found < (stream.frames or 0)


def _scan_packets(container, stream) -> tuple[np.ndarray, np.ndarray, bool, bool]:
    """Demux every packet -> (pts int64 ``[N]`` sorted, keyframe flags bool ``[N]`` in the same
    order, pts usable, demux failed). Without usable pts, frames keep their packet order."""
    pts, keys = array.array("q"), array.array("b")
    missing, failed = False, False
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue
            missing = missing or packet.pts is None
            pts.append(-1 if packet.pts is None else packet.pts)
            keys.append(packet.is_keyframe)
    except av.error.FFmpegError:
        failed = True
    pts_array = np.frombuffer(pts, dtype=np.int64)
    key_array = np.frombuffer(keys, dtype=np.int8).astype(bool)
    if missing:
        return np.arange(len(pts), dtype=np.int64), key_array, False, failed
    order = np.argsort(pts_array, kind="stable")
    return pts_array[order], key_array[order], True, failed


def _measured_fps(times: np.ndarray, header_rate: float | None) -> float:
    """The header rate when it agrees with the timestamps within 1%, else the measured rate."""
    span = float(times[-1] - times[0]) if len(times) > 1 else 0.0
    measured = (len(times) - 1) / span if span > 0 else None
    if measured is None:
        return header_rate or 1.0
    if header_rate and abs(header_rate - measured) <= 0.01 * measured:
        return header_rate
    return measured


def build_frame_index(path: str | Path) -> FrameIndex:
    """Demux ``path`` once and measure it -> ``FrameIndex`` (no cache; see ``frame_index``).

    Raises ``VideoReadError`` for files that cannot be read; a truncated file indexes fine, with
    ``info.truncated`` set.
    """
    container = open_container(path)
    try:
        stream = video_stream(container, path)
        pts, keys, seekable, failed = _scan_packets(container, stream)
        rate = stream.average_rate or stream.guessed_rate
        header_rate = float(rate) if rate else None
        if seekable and len(pts):
            times = (pts - pts[0]).astype(np.float64) * float(stream.time_base)
        else:
            times = np.arange(len(pts), dtype=np.float64) / (header_rate or 1.0)
        fps = _measured_fps(times, header_rate)
        duration = float(times[-1]) + 1.0 / fps if len(times) else 0.0
        short = looks_truncated(container, stream, len(pts), duration, fps)
        info = VideoInfo(
            path=str(path),
            num_frames=len(pts),
            fps=fps,
            duration=duration,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            header_frames=stream.frames or None,
            truncated=bool(failed or short),
        )
    finally:
        container.close()
    return FrameIndex(info, pts, keys, times, seekable)


_cache: OrderedDict[tuple[str, int, int], FrameIndex] = OrderedDict()
_cached_frames = 0
_index_roots: dict[str, Path | None] = {}


def clear_index_cache() -> None:
    """Forget the indices built in this process and where the index folders are."""
    global _cached_frames
    _cache.clear()
    _cached_frames = 0
    _index_roots.clear()


def _index_root(folder: str) -> Path | None:
    """The nearest folder at or above ``folder`` that holds an ``INDEX_DIR`` (remembered)."""
    if folder not in _index_roots:
        parent = os.path.dirname(folder)
        if os.path.isdir(os.path.join(folder, INDEX_DIR)):
            _index_roots[folder] = Path(folder)
        else:
            _index_roots[folder] = _index_root(parent) if parent != folder else None
    return _index_roots[folder]


def index_file(video: str | Path, root: str | Path) -> Path:
    """Where the on-disk index of ``video`` (a file under ``root``) lives."""
    relative = Path(os.path.abspath(video)).relative_to(os.path.abspath(root))
    return Path(root) / INDEX_DIR / relative.parent / f"{relative.name}.npz"


def save_frame_index(index: FrameIndex, stat: os.stat_result, file: Path) -> Path:
    """Write ``index`` of a video whose ``os.stat`` is ``stat`` to ``file`` (atomically)."""
    meta = {
        "version": FORMAT_VERSION,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "seekable": index.seekable,
        "info": asdict(index.info),
    }
    file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(file) as f:
        np.savez(
            f,
            pts=index.pts,
            keyframes=index.keyframes,
            times=index.times,
            meta=np.array(json.dumps(meta)),
        )
    return file


def load_frame_index(file: Path, video: str | Path, stat: os.stat_result) -> FrameIndex | None:
    """The index stored in ``file`` when it was built from a video with ``stat``'s size and
    modification time (and this format version), else None (stale, missing or unreadable).
    ``info.path`` becomes ``video``."""
    try:
        with np.load(file, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if (meta["version"], meta["size"], meta["mtime_ns"]) != (
                FORMAT_VERSION,
                stat.st_size,
                stat.st_mtime_ns,
            ):
                return None
            arrays = data["pts"], data["keyframes"], data["times"]
    except (OSError, ValueError, KeyError):
        return None
    info = VideoInfo(**{**meta["info"], "path": str(video)})
    return FrameIndex(info, *arrays, meta["seekable"])


def frame_index(path: str | Path) -> FrameIndex:
    """The ``FrameIndex`` of ``path``: from this process's cache, the on-disk index folder, or
    built (then kept in both); see the module docstring.

    Raises ``VideoReadError`` for files that cannot be read (failures are not cached).
    """
    stat = check_file(path)
    absolute = os.path.abspath(path)
    key = (absolute, stat.st_size, stat.st_mtime_ns)
    index = _cache.get(key)
    if index is not None:
        _cache.move_to_end(key)
        return index
    root = _index_root(os.path.dirname(absolute))
    file = index_file(absolute, root) if root is not None else None
    index = load_frame_index(file, path, stat) if file is not None else None
    if index is None:
        index = build_frame_index(path)
        if file is not None:
            try:
                save_frame_index(index, stat, file)
            except OSError:  # a read-only dataset folder: the index stays in memory
                pass
    _remember(key, index)
    return index


def _remember(key: tuple[str, int, int], index: FrameIndex) -> None:
    """Keep ``index`` in the LRU cache, dropping the oldest beyond ``CACHE_FRAMES`` frames."""
    global _cached_frames
    _cache[key] = index
    _cached_frames += index.info.num_frames
    while len(_cache) > 1 and _cached_frames > CACHE_FRAMES:
        _cached_frames -= _cache.popitem(last=False)[1].info.num_frames
