"""Demos on any video file: ``predict`` (with a checkpoint, or fitting a model on the video itself
first), ``classify`` (labels over time) and ``stream`` (constant-memory reading at native fps).

Letters: ``F`` frames of the file, ``F0`` context frames, ``R`` rolled-out frames, ``C``
channels, ``S`` model frame side, ``K`` classes.

Every demo writes into a fresh run folder under ``out`` and returns its path.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ttt_video.apps.report import (
    comparison_video,
    new_run_dir,
    plot_lines,
    write_comparison,
    write_video,
)
from ttt_video.apps.series import BinnedSeries
from ttt_video.data.video.frames import FrameFormat, frames_to_float
from ttt_video.data.video.reader import probe_video
from ttt_video.data.video.stream import stream_video
from ttt_video.data.video.writer import VideoWriter
from ttt_video.devices import resolve_device
from ttt_video.io_utils import pyplot, rss_bytes, write_json
from ttt_video.models import config_from_name
from ttt_video.models.compiling import compile_model
from ttt_video.models.video import VideoModel, VideoOutput, VideoState
from ttt_video.models.video_config import VideoConfig
from ttt_video.train.config import RunConfig
from ttt_video.train.video_metrics import psnr

FIT_RUN = "fit"
"""The run folder of the fit on the video, inside the demo's folder."""
GIF_FRAMES = 200
"""Frames of ``next_frame.gif`` (the MP4 has them all): a GIF's palette is made from all its
frames, so they are held in memory."""
PLOT_BINS = 1024
"""Most points per curve of the demos' plots: longer streams are plotted as bin means."""


@dataclass
class FitOptions:
    """Self-supervised fit of a small predictor on the video itself (test-time training)."""

    preset: str = "video_ttt_linear_small"
    size: int = 64
    channels: int = 3
    seconds: float = 180.0
    max_steps: int = 2000
    window: int = 12
    horizon: int = 4
    batch_size: int = 4
    lr: float = 3e-3
    workers: int = 1
    """Loader processes decoding the training windows from the file while the model trains
    (0: decode in the training process)."""
    compile: bool = False
    """Train through ``torch.compile`` (the model config's ``compile``)."""


def load_checkpoint_model(ckpt: str | Path) -> tuple[VideoModel, RunConfig]:
    """The ``VideoModel`` of a ``ttt-video fit`` checkpoint (eval mode) and its resolved run."""
    from ttt_video.train.runner import load_module

    run, module, _ = load_module(ckpt)
    if not hasattr(module, "model") or not isinstance(module.model, VideoModel):
        raise ValueError(f"--ckpt: {ckpt} is not a video checkpoint (task {run.task!r})")
    return module.model.eval(), run


def check_head(model: VideoModel, ckpt: str | Path, head: str) -> None:
    """``ValueError`` naming ``ckpt`` when its model lacks the ``head`` a demo reads:
    ``"prediction"`` (a pixel decoder) or ``"classification"`` (``num_classes`` > 0)."""
    module, reason = {
        "prediction": (model.decoder, "decoder = 'none'"),
        "classification": (model.classifier, "num_classes = 0"),
    }[head]
    if module is None:
        raise ValueError(f"--ckpt: {ckpt} has no {head} head ({reason})")


def check_at_least(flag: str, value: int, least: int = 1, when: str = "") -> None:
    """``ValueError`` ``--flag: expected >= least`` (the CLI prints it as a usage error) when
    ``value`` is smaller; ``when`` names the case that needs ``least``."""
    if value < least:
        raise ValueError(f"--{flag}: expected >= {least}{when}, got {value}")


def rollout_context(path: str | Path, num_frames: int, context: int | None, horizon: int) -> int:
    """The frames before the rollout of ``predict_demo`` on ``path``, a file of ``num_frames``
    frames: ``context``, by default 3/4 of the frames, fewer when ``horizon`` frames would not
    fit after them (at least 2). ``ValueError`` naming the file and its frames when ``context
    + horizon`` do not fit in them."""
    if num_frames < 3:
        raise ValueError(f"{path}: {num_frames} frames; the predict demo needs at least 3")
    given = context is not None
    context = context if given else max(2, min((3 * num_frames) // 4, num_frames - horizon))
    if context + horizon > num_frames:
        raise ValueError(
            f"{path}: {num_frames} frames; --context + --horizon must fit in them, got {context}"
            f"{'' if given else ' (default)'} + {horizon} = {context + horizon}"
        )
    return context


def fit_run(
    path: str | Path, num_frames: int, opts: FitOptions, out: Path, seed: int, device: str
) -> dict:
    """The run file of :func:`fit_on_video` as a mapping (``video_predict``, ``source: file``).

    Windows of ``opts.window`` frames (at most ``num_frames``, decoded from the file window by
    window: ``ttt_video.data.video.windows``) train their last ``opts.horizon`` frames on
    fed-back predictions (``rollout_training``); AdamW, cosine from ``opts.lr`` to 0,
    no warm-up, gradients clipped at 1; ``opts.seconds`` or ``opts.max_steps``, whichever
    comes first. A ``device`` that resolves to CUDA trains on one GPU (the trainer's first).
    """
    window = min(opts.window, num_frames)
    horizon = min(opts.horizon, window - 1)
    frames = {"image_size": opts.size, "channels": opts.channels}
    return {
        "task": "video_predict",
        "name": FIT_RUN,
        "out_dir": str(out),
        "model": {
            "preset": opts.preset,
            **frames,
            "compile": opts.compile,
            "objective": {"rollout_training": True},
        },
        "data": {
            "source": "file",
            "path": str(path),
            "size": opts.size,
            "channels": opts.channels,
            "max_frames": num_frames,
            "num_input": window - horizon,
            "num_output": horizon,
            "batch_size": opts.batch_size,
            "num_workers": opts.workers,
            "time_budget_s": opts.seconds,
        },
        "optim": {
            "lr": opts.lr,
            "min_lr": 0.0,
            "betas": [0.9, 0.999],
            "weight_decay": 0.0,
            "warmup_fraction": 0.0,
            "grad_clip": 1.0,
        },
        "trainer": {
            "accelerator": "gpu" if resolve_device(device).type == "cuda" else "cpu",
            "max_steps": opts.max_steps,
            "val_check_interval": opts.max_steps,
            "seed": seed,
        },
    }


def fit_on_video(
    path: str | Path,
    num_frames: int,
    opts: FitOptions,
    out: str | Path,
    seed: int = 0,
    device: str = "auto",
) -> VideoModel:
    """Train a fresh ``opts.preset`` model on random windows of the first ``num_frames`` frames
    of ``path``, as ``ttt-video fit`` would: the ``video_predict`` task and the shared runner
    (run file: :func:`fit_run`), in the run folder ``out/fit`` (``config.yaml``,
    ``checkpoints/last.ckpt``, logs). Returns the trained model in eval mode on ``device``.
    """
    from ttt_video.train.runner import fit
    from ttt_video.train.tasks import build_run_config

    run = build_run_config(fit_run(path, num_frames, opts, Path(out), seed, device), str(path))
    fit(run)
    model, _ = load_checkpoint_model(run.run_dir / "checkpoints" / "last.ckpt")
    return model.to(resolve_device(device))


@torch.no_grad()
def stream_one_step(
    model: VideoModel, path: str | Path, fmt: FrameFormat, chunk: int, split_at: int | None = None
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, VideoOutput]]:
    """Stream ``path`` through ``model`` (on its device), ``chunk`` frames per call.

    Yields per call ``(t, x, pred, out)``: the index ``t`` of its first frame, its frames
    ``x [K, C, S, S]`` (float in [0, 1], on the CPU), the one-step predictions ``pred [K, C, S,
    S]`` of those frames, each from the frames before it only (frame 0, which has none, is its
    own), and the model's output (its state and the prediction of the frame after them). A chunk
    that straddles frame ``split_at`` is cut there, so that a call ends just before it. Holds
    one chunk at a time: memory does not grow with the file.
    """
    device = next(model.parameters()).device
    state: VideoState | None = None
    ahead: torch.Tensor | None = None
    t = 0
    for frames in stream_video(path, chunk, fmt=fmt, allow_truncated=True):
        cut = split_at - t if split_at is not None and t < split_at < t + len(frames) else None
        for piece in (frames,) if cut is None else (frames[:cut], frames[cut:]):
            out = model(piece[None].to(device), state)
            state = out.state
            x = frames_to_float(piece)
            nxt = out.next_frames[0].clamp(0, 1).cpu()
            pred = torch.cat((x[:1] if ahead is None else ahead[None], nxt[:-1]))
            ahead = nxt[-1]
            yield t, x, pred, out
            t += len(piece)


@dataclass
class Rollout:
    """The rollout after ``context`` frames, assembled while the file streams past it: ``add``
    every chunk in order, chunks cut at frame ``context`` (``stream_one_step(..., split_at=
    context)``).

    Attributes:
        before: ``[<= shown, C, S, S]`` the last ``shown`` frames before frame ``context``.
        pred: ``[horizon, C, S, S]`` the model's predictions fed back from the state after
            frame ``context - 1`` (None until the stream gets there).
        truth: chunks ``[K_i, C, S, S]`` of the true frames from ``context`` on (``horizon``
            frames in all once the stream has passed them; fewer when the file ends first).
    """

    context: int
    horizon: int
    shown: int = 8
    before: torch.Tensor | None = None
    pred: torch.Tensor | None = None
    truth: list[torch.Tensor] = field(default_factory=list)

    def add(self, model: VideoModel, t: int, x: torch.Tensor, out: VideoOutput) -> None:
        """Take the chunk ``x [K, C, S, S]`` starting at frame ``t`` and the model's output."""
        end = t + x.shape[0]
        if end <= self.context:
            kept = x if self.before is None else torch.cat((self.before, x))
            self.before = kept[-self.shown :]
            if end == self.context:
                with torch.no_grad():
                    pred, _ = model.feed_back(out.next_frames[:, -1], self.horizon, out.state)
                self.pred = pred[0].cpu()
        elif sum(len(f) for f in self.truth) < self.horizon:
            self.truth.append(x[max(0, self.context - t) :])

    def write(self, run_dir: Path, fps: float) -> list[float]:
        """Write ``rollout.mp4/.gif``; the PSNR of each predicted frame that has a true one."""
        truth = torch.cat(self.truth)[: self.horizon] if self.truth else self.before[:0]
        known = truth.shape[0]
        roll_psnr = psnr(self.pred[None, :known], truth[None])[0].tolist() if known else []
        video = comparison_video(
            torch.cat((self.before, truth)),
            torch.cat((self.before, self.pred)),
            context=self.before.shape[0],
            name="prediction",
            scale=2,
        )
        write_comparison(run_dir / "rollout", [video], fps)
        return roll_psnr


def predict_demo(
    path: str | Path,
    out: str | Path,
    ckpt: str | Path | None = None,
    context: int | None = None,
    horizon: int = 16,
    fit: FitOptions | None = None,
    device: str = "auto",
    chunk: int = 16,
    compile: bool = False,
) -> Path:
    """Next-frame predictions over the whole file and a rollout after ``context`` frames, in
    memory that does not grow with the file (it streams through the model ``chunk`` frames at
    a time; the fit reads random windows from the file).

    Writes ``next_frame.mp4`` (truth | one-step prediction, every frame, encoded as it streams),
    ``next_frame.gif`` (its first ``GIF_FRAMES`` frames), ``psnr.csv`` (per frame: the model's
    and copy-last-frame's PSNR), ``psnr.png`` (those curves, as means over at most
    ``PLOT_BINS`` bins of frames), ``rollout.mp4/.gif`` (truth | prediction fed back from frame
    ``context`` on) and ``metrics.json``; without ``ckpt``, also the run folder ``fit/`` of the
    fit on the first ``context`` frames (:func:`fit_on_video`). The model runs on ``device``
    (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``), through ``torch.compile`` with
    ``compile`` (the fit too). ``context`` defaults to 3/4 of the file's frames, fewer when
    ``horizon`` frames would not fit after them (:func:`rollout_context`); arguments that do
    not fit the file or the checkpoint raise ``ValueError`` before anything is fitted or written.
    """
    fit = fit or FitOptions()
    check_at_least("horizon", horizon)
    if context is not None:
        fitting = ckpt is None  # the fit on the video trains on windows of 2 frames or more
        check_at_least(
            "context", context, 2 if fitting else 1, " without --ckpt" if fitting else ""
        )
    target = resolve_device(device)
    if ckpt is not None:
        model, _ = load_checkpoint_model(ckpt)
        check_head(model, ckpt, "prediction")
        model = model.to(target)
        size, channels = model.cfg.image_size, model.cfg.channels
    else:
        size, channels = fit.size, fit.channels
    info = probe_video(path)
    F = info.num_frames
    context = rollout_context(path, F, context, horizon)
    run_dir = new_run_dir(out, f"predict-{Path(path).stem}")
    print(
        f"{path}: {F} frames at {info.fps:.2f} fps, resized to {channels}x{size}x{size}; "
        f"run {run_dir}"
    )
    if ckpt is None:
        model = fit_on_video(path, context, replace(fit, compile=compile), run_dir, device=device)
    if compile:
        compile_model(model)
    fmt = FrameFormat(size=size, channels=channels)
    curves = BinnedSeries(3, PLOT_BINS)  # frame, model PSNR, copy-last-frame PSNR
    rollout = Rollout(context, horizon)
    gif: list[torch.Tensor] = []
    last: torch.Tensor | None = None
    frames = 0
    with (
        VideoWriter(run_dir / "next_frame.mp4", info.fps, pad_to_even=True) as video,
        (run_dir / "psnr.csv").open("w", newline="") as table,
    ):
        rows = csv.writer(table)
        rows.writerow(["frame", "psnr_model", "psnr_copy_last"])
        bar = tqdm(total=F, desc="next-frame predictions")
        for t, x, pred, result in stream_one_step(model, path, fmt, chunk, split_at=context):
            before = torch.cat((x[:1] if last is None else last[None], x[:-1]))
            model_db = psnr(pred[None], x[None])[0].tolist()
            copy_db = psnr(before[None], x[None])[0].tolist()
            for i in range(1 if t == 0 else 0, x.shape[0]):
                rows.writerow([t + i, f"{model_db[i]:.3f}", f"{copy_db[i]:.3f}"])
                curves.add(t + i, model_db[i], copy_db[i])
            tags = [f"frame {t + i}" for i in range(x.shape[0])]
            shown = comparison_video(x, pred, 0, name="prediction", scale=2, tags=tags)
            video.write(shown)
            gif.extend((shown[: GIF_FRAMES - len(gif)] * 255).round().to(torch.uint8))
            rollout.add(model, t, x, result)
            last, frames = x[-1], t + x.shape[0]
            bar.update(x.shape[0])
        bar.close()
    write_video(run_dir / "next_frame.gif", torch.stack(gif), info.fps)
    binned = curves.means()
    width = f" (means over {curves.width} frames)" if curves.width > 1 else ""
    plot_lines(
        {"model (one step)": binned[:, 1], "copy last frame": binned[:, 2]},
        run_dir / "psnr.png",
        f"next-frame PSNR, {Path(path).name}{width}",
        "frame",
        "PSNR (dB)",
        x=binned[:, 0],
    )
    if rollout.pred is None:
        print(f"{path}: decoding stopped after {frames} frames, before frame {context}: no rollout")
    mean = curves.total_mean()
    metrics = {
        "file": str(path),
        "frames": frames,
        "context": context,
        "horizon": horizon,
        "fitted_on_video": ckpt is None,
        "psnr_one_step_mean": float(mean[1]),
        "psnr_copy_last_mean": float(mean[2]),
        "psnr_rollout": rollout.write(run_dir, info.fps) if rollout.pred is not None else [],
        "next_frame_gif_frames": len(gif),
    }
    write_json(run_dir / "metrics.json", metrics)
    print(
        f"one-step PSNR {metrics['psnr_one_step_mean']:.2f} dB (copy last frame "
        f"{metrics['psnr_copy_last_mean']:.2f} dB); outputs in {run_dir}"
    )
    return run_dir


def class_names(run, ckpt: str | Path) -> list[str]:
    """Names of the ``run.model.num_classes`` classes of a classification checkpoint: the
    training data's class index it stores (digits for long-range recall), the indices for
    classes it does not name."""
    from ttt_video.train.runner import load_class_names

    names = load_class_names(ckpt) or []
    return names + [str(i) for i in range(len(names), run.model.num_classes)]


def check_frame_format(
    model: VideoModel, ckpt: str | Path, size: int | None, channels: int | None
) -> FrameFormat:
    """The frames a checkpoint's model reads; ``ValueError`` when ``size`` or ``channels`` is
    given (not None) and differs from the checkpoint's."""
    S, C = model.cfg.image_size, model.cfg.channels
    for flag, given, own in (("size", size, S), ("channels", channels, C)):
        if given is not None and given != own:
            raise ValueError(
                f"--{flag}: {given} conflicts with the checkpoint {ckpt}, whose model reads "
                f"{C}x{S}x{S} frames (channels x size x size); leave --{flag} out"
            )
    return FrameFormat(size=S, channels=C)


@torch.no_grad()
def classify_demo(
    path: str | Path,
    ckpt: str | Path,
    out: str | Path,
    chunk: int = 16,
    size: int | None = None,
    channels: int | None = None,
    device: str = "auto",
    compile: bool = False,
) -> Path:
    """Per-frame class probabilities of ``path`` under a ``video_classify`` checkpoint.

    Frames are resized to the checkpoint's ``image_size`` and ``channels``; ``size`` and
    ``channels``, when given, must equal them (``ValueError`` otherwise). The model runs on
    ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``), through ``torch.compile``
    with ``compile``.

    Writes ``labels.csv`` (frame, top-1 class, its probability; row by row as the file streams),
    ``labels_over_time.png`` (probabilities of the classes that are ever top-3, as means over
    at most ``PLOT_BINS`` bins of frames) and ``metrics.json``. Memory does not grow with the
    file.
    """
    check_at_least("chunk", chunk)
    target = resolve_device(device)
    model, run = load_checkpoint_model(ckpt)
    check_head(model, ckpt, "classification")
    fmt = check_frame_format(model, ckpt, size, channels)
    model = model.to(target)
    if compile:
        compile_model(model)
    names = class_names(run, ckpt)
    info = probe_video(path)
    run_dir = new_run_dir(out, f"classify-{Path(path).stem}")
    K = len(names)
    curves = BinnedSeries(1 + K, PLOT_BINS)  # frame, then the probability of each class
    ever_top: set[int] = set()
    state, frames, final = None, 0, None
    with (run_dir / "labels.csv").open("w", newline="") as table:
        rows = csv.writer(table)
        rows.writerow(["frame", "label", "probability"])
        for chunk_frames in tqdm(
            stream_video(path, chunk, fmt=fmt, allow_truncated=True),
            total=-(-info.num_frames // chunk),
            desc="classifying",
        ):
            result = model(chunk_frames[None].to(target), state)
            state = result.state
            p = result.logits[0].softmax(-1).cpu()
            top_p, top = p.max(-1)
            ever_top.update(p.topk(min(3, K), dim=-1).indices.flatten().tolist())
            for i, row in enumerate(p.double().numpy()):
                rows.writerow([frames + i, names[int(top[i])], f"{float(top_p[i]):.4f}"])
                curves.add(frames + i, *row)
            frames += p.shape[0]
            final = (names[int(top[-1])], float(top_p[-1]))
    binned = curves.means()
    width = f" (means over {curves.width} frames)" if curves.width > 1 else ""
    plot_lines(
        {names[k]: binned[:, 1 + k] for k in sorted(ever_top)[:10]},
        run_dir / "labels_over_time.png",
        f"class probabilities, {Path(path).name}{width}",
        "frame",
        "probability",
        x=binned[:, 0],
    )
    metrics = {"file": str(path), "frames": frames, "final_label": final[0]}
    write_json(run_dir / "metrics.json", {**metrics, "final_probability": final[1]})
    print(f"{path}: {frames} frames, label at the end: {final[0]}; outputs in {run_dir}")
    return run_dir


@torch.no_grad()
def stream_demo(
    path: str | Path,
    out: str | Path,
    ckpt: str | Path | None = None,
    preset: str = "video_ttt_linear_small",
    size: int = 64,
    channels: int = 3,
    chunk: int = 1,
    device: str = "auto",
    compile: bool = False,
) -> Path:
    """Read every frame of ``path`` at native fps through the model, ``chunk`` frames per call.

    Records per chunk the wall time, the process's resident memory and the model state's
    size; writes ``stream.csv`` (row by row as the file streams), ``stream.png`` (frames/s and
    memory against the frame index, as means over at most ``PLOT_BINS`` bins of chunks) and
    ``metrics.json`` (the median frames/s is over those bins). Without ``ckpt`` a randomly
    initialised ``preset`` is used (speed and memory do not depend on the weights). The model
    runs on ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``; the time of a chunk
    waits for the GPU), through ``torch.compile`` with ``compile`` (the first chunks' times
    include compiling).
    """
    check_at_least("chunk", chunk)
    target = resolve_device(device)
    if ckpt is not None:
        model, _ = load_checkpoint_model(ckpt)
    else:
        cfg = config_from_name(preset)
        if not isinstance(cfg, VideoConfig):
            raise ValueError(
                f"--preset: {preset} is a language-model preset; demo stream needs a video "
                "preset (video_...)"
            )
        model = VideoModel(replace(cfg, image_size=size, channels=channels)).eval()
    model = model.to(target)
    if compile:
        compile_model(model)
    fmt = FrameFormat(size=model.cfg.image_size, channels=model.cfg.channels)
    info = probe_video(path)
    run_dir = new_run_dir(out, f"stream-{Path(path).stem}")
    curves = BinnedSeries(4, PLOT_BINS)  # frames seen, frames/s, RSS MiB, state MiB
    state, seen, rss_peak, state_mib = None, 0, 0.0, 0.0
    with (run_dir / "stream.csv").open("w", newline="") as table:
        rows = csv.writer(table)
        rows.writerow(["frames_seen", "frames_per_s", "rss_mib", "state_mib"])
        for frames in tqdm(
            stream_video(path, chunk, fmt=fmt, allow_truncated=True),
            total=-(-info.num_frames // chunk),
            desc="streaming",
        ):
            t0 = time.perf_counter()
            state = model(frames[None].to(target), state).state
            if target.type == "cuda":
                torch.cuda.synchronize(target)
            dt = time.perf_counter() - t0
            seen += frames.shape[0]
            rss, state_mib = rss_bytes() / 2**20, state.nbytes() / 2**20
            rss_peak = max(rss_peak, rss)
            rows.writerow([seen, f"{frames.shape[0] / dt:.2f}", f"{rss:.2f}", f"{state_mib:.4f}"])
            curves.add(seen, frames.shape[0] / dt, rss, state_mib)
    binned = curves.means()
    _plot_stream(run_dir / "stream.png", *binned.T)
    metrics = {
        "file": str(path),
        "frames": seen,
        "native_fps": info.fps,
        "mixer": model.cfg.mixer,
        "frames_per_s_median": float(np.median(binned[:, 1])) if seen else 0.0,
        "rss_mib_peak": rss_peak,
        "rss_mib_growth_second_half": float(binned[-1, 2] - binned[len(binned) // 2, 2])
        if seen
        else 0.0,
        "state_mib_final": state_mib,
    }
    write_json(run_dir / "metrics.json", metrics)
    print(
        f"{path}: {seen} frames, {metrics['frames_per_s_median']:.1f} frames/s (median), "
        f"peak RSS {rss_peak:.0f} MiB (+{metrics['rss_mib_growth_second_half']:.1f} MiB over "
        f"the second half), state {state_mib:.3f} MiB; outputs in {run_dir}"
    )
    return run_dir


def _plot_stream(path: Path, frames, fps, rss, state) -> None:
    """Frames/s and memory (MiB) against the frames seen, each ``[n]``, as a PNG."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot(frames, fps, lw=0.8)
    axes[0].set_title("throughput")
    axes[0].set_ylabel("frames/s")
    axes[1].plot(frames, rss, label="process RSS")
    axes[1].plot(frames, state, label="model state")
    axes[1].set_title("memory")
    axes[1].set_ylabel("MiB")
    axes[1].legend()
    for ax in axes:
        ax.set_xlabel("frame")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
