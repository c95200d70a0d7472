"""Writing video (mp4 via libx264 or mpeg4, avi, gif), captions, and laying videos side by side
or in a grid.

Letters: F frames, C channels (1 or 3), H height, W width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ttt_video.data.video.errors import VideoWriteError

# (container format, default codec, pixel format) per file suffix.
_BY_SUFFIX = {
    ".mp4": ("mp4", "libx264", "yuv420p"),
    ".avi": ("avi", "mpeg4", "yuv420p"),
    ".mkv": ("matroska", "libx264", "yuv420p"),
    ".gif": ("gif", "gif", "pal8"),
}
_SUBSAMPLED = ("yuv420p",)


def _to_uint8_hwc(frames: torch.Tensor | np.ndarray, path: Path) -> np.ndarray:
    """uint8 or float-in-[0, 1] ``[F, C, H, W]`` -> uint8 RGB numpy ``[F, H, W, 3]``."""
    x = torch.as_tensor(frames).detach().cpu()
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise VideoWriteError(
            path, f"frames must be [F, C, H, W] with C in (1, 3), got {tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise VideoWriteError(path, "no frames to write")
    if x.is_floating_point():
        x = (x.clamp(0, 1) * 255).round()
    x = x.to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def write_video(
    path: str | Path,
    frames: torch.Tensor | np.ndarray,
    fps: float,
    *,
    codec: str | None = None,
    crf: int | None = None,
    pad_to_even: bool = False,
) -> Path:
    """Write ``frames`` (uint8, or float in [0, 1], ``[F, C, H, W]``) to ``path``; returns the path.

    The container follows the suffix (.mp4, .avi, .mkv, .gif); ``codec`` overrides the default
    (libx264 for mp4/mkv, mpeg4 for avi). 4:2:0 codecs need even sizes: odd ones raise
    ``VideoWriteError`` unless ``pad_to_even`` (one black row/column added). ``crf`` sets
    libx264 quality (0 lossless luma, 23 default). A GIF's one 256-colour palette is made from
    all its frames; the other formats are encoded by :class:`VideoWriter`.
    """
    path = Path(path)
    if path.suffix.lower() != ".gif":
        with VideoWriter(path, fps, codec=codec, crf=crf, pad_to_even=pad_to_even) as writer:
            writer.write(frames)
        return path
    _check_target(path, fps)
    rgb = _to_uint8_hwc(frames, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with av.open(str(path), "w", format="gif") as container:
            stream = _add_stream(container, codec or "gif", fps, rgb.shape[2], rgb.shape[1], "pal8")
            images = (av.VideoFrame.from_ndarray(image, format="rgb24") for image in rgb)
            for frame in _adaptive_palette(images, rgb.shape, 1 / stream.average_rate):
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
    except av.error.FFmpegError as err:
        raise VideoWriteError(path, f"encoding a GIF failed ({err.strerror})") from err
    return path


def _check_target(path: Path, fps: float) -> tuple[str, str, str]:
    """``(container format, default codec, pixel format)`` of ``path``'s suffix; checks ``fps``."""
    if path.suffix.lower() not in _BY_SUFFIX:
        raise VideoWriteError(
            path, f"unknown suffix {path.suffix!r}; use one of {sorted(_BY_SUFFIX)}"
        )
    if fps <= 0:
        raise VideoWriteError(path, f"fps must be positive, got {fps}")
    return _BY_SUFFIX[path.suffix.lower()]


def _add_stream(container, codec: str, fps: float, width: int, height: int, pix: str):
    """A video stream of ``container`` at ``fps`` (as a fraction), ``width x height``, ``pix``."""
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height, stream.pix_fmt = width, height, pix
    return stream


class VideoWriter:
    """Encode a video chunk by chunk (.mp4, .avi, .mkv): memory of one chunk, any length.

        with VideoWriter("long.mp4", fps=10, pad_to_even=True) as writer:
            for chunk in chunks:  # uint8 or float in [0, 1] [K, C, H, W], the same H, W each time
                writer.write(chunk)

    Options as in :func:`write_video` (GIF is not streamed: its palette is made from all frames).
    The size is the first chunk's; ``frames_written`` counts the frames so far. Closing (leaving
    the ``with`` block) flushes the encoder; a writer that got no frame raises
    ``VideoWriteError`` there, and leaves no file.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        *,
        codec: str | None = None,
        crf: int | None = None,
        pad_to_even: bool = False,
    ):
        self.path = Path(path)
        fmt, default_codec, self.pix = _check_target(self.path, fps)
        if fmt == "gif":
            raise VideoWriteError(self.path, "a GIF is written whole: use write_video")
        self.format, self.codec, self.fps = fmt, codec or default_codec, fps
        self.options = {"crf": str(crf)} if crf is not None and self.codec == "libx264" else {}
        self.pad_to_even = pad_to_even
        self.frames_written = 0
        self._container = self._stream = None

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        """Encode ``frames`` (uint8, or float in [0, 1], ``[K, C, H, W]``)."""
        rgb = _to_uint8_hwc(frames, self.path)
        h, w = rgb.shape[1:3]
        if self.pix in _SUBSAMPLED and (h % 2 or w % 2):
            if not self.pad_to_even:
                reason = (
                    f"odd size {w}x{h}: {self.codec} with {self.pix} needs even width and height"
                )
                raise VideoWriteError(self.path, reason + " (pass pad_to_even=True)")
            rgb = np.pad(rgb, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        try:
            if self._container is None:
                self._open(rgb.shape[2], rgb.shape[1])
            elif (self._stream.width, self._stream.height) != (rgb.shape[2], rgb.shape[1]):
                size = f"{rgb.shape[2]}x{rgb.shape[1]}"
                before = f"{self._stream.width}x{self._stream.height}"
                raise VideoWriteError(self.path, f"frames of {size} after frames of {before}")
            for image in rgb:
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                self._container.mux(self._stream.encode(frame))
        except av.error.FFmpegError as err:
            raise VideoWriteError(
                self.path, f"encoding with {self.codec} failed ({err.strerror})"
            ) from err
        self.frames_written += len(rgb)

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), "w", format=self.format)
        self._stream = _add_stream(self._container, self.codec, self.fps, width, height, self.pix)
        self._stream.options = self.options

    def close(self) -> None:
        """Flush the encoder and close the file (a writer without frames raises)."""
        if self._container is None:
            raise VideoWriteError(self.path, "no frames to write")
        container, self._container = self._container, None
        try:
            container.mux(self._stream.encode())
        except av.error.FFmpegError as err:
            raise VideoWriteError(
                self.path, f"flushing {self.codec} failed ({err.strerror})"
            ) from err
        finally:
            container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._container is not None:
            self._container.close()
            self._container = None


def _adaptive_palette(frames, shape: tuple[int, ...], time_base: Fraction) -> list[av.VideoFrame]:
    """rgb24 frames of a ``[F, H, W, 3]`` video -> pal8 frames sharing one 256-colour palette.

    ffmpeg's ``palettegen`` (over all frames) then ``paletteuse``: a video with at most 256
    colours (any grey video) keeps them exactly; more are quantised by median cut and dithered.
    """
    graph = av.filter.Graph()
    source = graph.add_buffer(width=shape[2], height=shape[1], format="rgb24", time_base=time_base)
    split = graph.add("split")
    palette = graph.add("palettegen", "max_colors=256:reserve_transparent=0:stats_mode=full")
    use = graph.add("paletteuse")
    sink = graph.add("buffersink")
    source.link_to(split)
    split.link_to(palette, 0, 0)
    split.link_to(use, 1, 0)
    palette.link_to(use, 0, 1)
    use.link_to(sink)
    graph.configure()
    for i, frame in enumerate(frames):
        frame.pts = i
        graph.push(frame)
    graph.push(None)
    out = []
    while True:
        try:
            frame = graph.pull()
        except av.error.EOFError:
            return out
        out.append(frame)


def caption(
    frames: torch.Tensor,
    left: str | Sequence[str],
    right: str | Sequence[str] = "",
    height: int = 14,
) -> torch.Tensor:
    """Frames ``[F, C, H, W]`` (uint8, or float in [0, 1]) under a black strip of captions.

    ``left``/``right``: one text for every frame or one per frame, drawn in white at the
    strip's left and right ends with PIL's default font (about 11 pixels high; upscale small
    frames first so the texts fit). Returns ``[F, C, height + H, W]`` of the frames' dtype.
    """
    F, C, _, W = frames.shape
    lefts = [left] * F if isinstance(left, str) else list(left)
    rights = [right] * F if isinstance(right, str) else list(right)
    if len(lefts) != F or len(rights) != F:
        raise ValueError(f"captions: expected one text or {F}, got {len(lefts)} and {len(rights)}")
    font = ImageFont.load_default()
    strips: dict[tuple[str, str], torch.Tensor] = {}
    for texts in zip(lefts, rights):
        if texts not in strips:
            image = Image.new("L", (W, height))
            draw = ImageDraw.Draw(image)
            draw.text((2, height // 2), texts[0], fill=255, font=font, anchor="lm")
            draw.text((W - 2, height // 2), texts[1], fill=255, font=font, anchor="rm")
            strips[texts] = torch.from_numpy(np.array(image))
    strip = torch.stack([strips[texts] for texts in zip(lefts, rights)])[:, None]
    strip = strip.float() / 255 if frames.is_floating_point() else strip
    return torch.cat((strip.to(frames).expand(-1, C, -1, -1), frames), dim=-2)


def upscale(frames: torch.Tensor, factor: int) -> torch.Tensor:
    """``[F, C, H, W]`` -> ``[F, C, factor H, factor W]`` (nearest), for watchable small frames."""
    return frames.repeat_interleave(factor, -2).repeat_interleave(factor, -1)


def comparison_video(
    truth: torch.Tensor,
    pred: torch.Tensor,
    context: int,
    name: str = "model",
    scale: int = 1,
    tags: Sequence[str] | None = None,
) -> torch.Tensor:
    """Ground truth | prediction, ``[F, C, H, W]`` float in [0, 1] each -> one captioned video.

    Each panel is upscaled by ``scale`` and captioned ``truth`` or ``name`` on the left, and
    on the right ``tags`` (one per frame), by default ``given`` for the first ``context`` frames
    and ``+k`` for the ``k``-th frame after them: ``[F, C, 14 + scale H, 2 scale W + 4]``.
    Upscale 64-pixel frames (``scale=2``) before a long ``name``, so that the texts fit.
    """
    if tags is None:
        tags = ["given" if i < context else f"+{i - context + 1}" for i in range(truth.shape[0])]
    panels = [
        caption(upscale(video, scale) if scale > 1 else video, label, tags)
        for video, label in ((truth, "truth"), (pred, name))
    ]
    return side_by_side(*panels, gap=4)


def side_by_side(*videos: torch.Tensor, gap: int = 2) -> torch.Tensor:
    """Join videos ``[F, C, H_i, W_i]`` left to right -> ``[F, C, max H, sum W + gaps]``.

    Shorter videos hold their last frame; grayscale is broadcast to RGB when channels differ;
    videos are top-aligned on a black background.
    """
    return video_grid(list(videos), cols=len(videos), gap=gap)


def video_grid(videos: list[torch.Tensor], cols: int | None = None, gap: int = 2) -> torch.Tensor:
    """Tile videos ``[F_i, C_i, H_i, W_i]`` row-major in ``cols`` columns -> ``[F, C, H', W']``.

    ``F`` is the longest video (shorter ones hold their last frame), cells are the largest
    ``H_i x W_i``, channels the largest ``C_i`` (grayscale broadcast to RGB).
    """
    if not videos:
        raise ValueError("video_grid needs at least one video")
    if any(v.ndim != 4 for v in videos):
        raise ValueError(f"videos must be [F, C, H, W], got {[tuple(v.shape) for v in videos]}")
    cols = cols or math.ceil(math.sqrt(len(videos)))
    rows = math.ceil(len(videos) / cols)
    f = max(v.shape[0] for v in videos)
    c = max(v.shape[1] for v in videos)
    h = max(v.shape[2] for v in videos)
    w = max(v.shape[3] for v in videos)
    out = videos[0].new_zeros((f, c, rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap))
    for i, v in enumerate(videos):
        held = torch.cat([v, v[-1:].expand(f - v.shape[0], -1, -1, -1)]) if v.shape[0] < f else v
        top, left = (i // cols) * (h + gap), (i % cols) * (w + gap)
        out[:, :, top : top + v.shape[2], left : left + v.shape[3]] = held.expand(-1, c, -1, -1)
    return out
