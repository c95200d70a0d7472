"""Demos on any video file: ``predict`` (with a checkpoint, or fitting a model on the video itself
first), ``classify`` (labels over time) and ``stream`` (constant-memory reading at native fps).

Letters: ``F`` frames of the file, ``F0`` context frames, ``R`` rolled-out frames, ``C``
channels, ``S`` model frame side, ``K`` classes.

Every demo writes into a fresh run folder under ``out`` and returns its path.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ttt_video.apps.report import comparison_video, new_run_dir, plot_lines, write_comparison
from ttt_video.data.video.frames import FrameFormat, frames_to_float
from ttt_video.data.video.reader import probe_video, read_video
from ttt_video.data.video.stream import stream_video
from ttt_video.devices import resolve_device
from ttt_video.io_utils import pyplot, rss_bytes, write_json
from ttt_video.models import config_from_name
from ttt_video.models.video import VideoModel, VideoState
from ttt_video.train.config import RunConfig
from ttt_video.train.video_metrics import psnr

FIT_RUN = "fit"
"""The run folder of the fit on the video, inside the demo's folder."""


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


def load_checkpoint_model(ckpt: str | Path) -> tuple[VideoModel, RunConfig]:
    """The ``VideoModel`` of a ``ttt-video fit`` checkpoint (eval mode) and its resolved run."""
    from ttt_video.train.runner import load_module

    run, module, _ = load_module(ckpt)
    if not hasattr(module, "model") or not isinstance(module.model, VideoModel):
        raise ValueError(f"--ckpt: {ckpt} is not a video checkpoint (task {run.task!r})")
    return module.model.eval(), run


def read_frames(path: str | Path, size: int, channels: int) -> tuple[torch.Tensor, float]:
    """Every frame of ``path`` resized (centre crop) to ``size``: (uint8 ``[F, C, S, S]``, fps)."""
    info = probe_video(path)
    clip = read_video(path, fmt=FrameFormat(size=size, channels=channels), allow_truncated=True)
    return clip.frames, info.fps


def fit_run(
    path: str | Path, num_frames: int, opts: FitOptions, out: Path, seed: int, device: str
) -> dict:
    """The run file of :func:`fit_on_video` as a mapping (``video_predict``, ``source: file``).

    Windows of ``opts.window`` frames (at most ``num_frames``) train their last ``opts.horizon``
    frames on fed-back predictions (``rollout_training``); AdamW, cosine from ``opts.lr`` to 0,
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
        "model": {"preset": opts.preset, **frames, "objective": {"rollout_training": True}},
        "data": {
            "source": "file",
            "path": str(path),
            "size": opts.size,
            "channels": opts.channels,
            "max_frames": num_frames,
            "num_input": window - horizon,
            "num_output": horizon,
            "batch_size": opts.batch_size,
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
def one_step_predictions(model: VideoModel, frames: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """Stream ``frames [F, C, S, S]`` (on the CPU) through the model on its device, ``chunk``
    frames per call; ``[F - 1, C, S, S]`` predictions (on the CPU) of frames ``1..F-1``, each
    from the frames before it only."""
    device = next(model.parameters()).device
    state: VideoState | None = None
    preds = []
    for i in tqdm(range(0, frames.shape[0] - 1, chunk), desc="next-frame predictions"):
        out = model(frames[None, i : min(i + chunk, frames.shape[0] - 1)].to(device), state)
        state = out.state
        preds.append(out.next_frames[0].clamp(0, 1).cpu())
    return torch.cat(preds)


def predict_demo(
    path: str | Path,
    out: str | Path,
    ckpt: str | Path | None = None,
    context: int | None = None,
    horizon: int = 16,
    fit: FitOptions | None = None,
    device: str = "auto",
) -> Path:
    """Next-frame predictions over the whole file and a rollout after ``context`` frames.

    Writes ``next_frame.mp4/.gif`` (truth | one-step prediction), ``rollout.mp4/.gif`` (truth |
    prediction fed back from frame ``context`` on), ``psnr.png`` and ``metrics.json``; without
    ``ckpt``, also the run folder ``fit/`` of the fit on the first ``context`` frames
    (:func:`fit_on_video`). The model runs on ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``,
    ``"cuda:N"``).
    """
    fit = fit or FitOptions()
    target = resolve_device(device)
    if ckpt is not None:
        model, _ = load_checkpoint_model(ckpt)
        model = model.to(target)
        size, channels = model.cfg.image_size, model.cfg.channels
    else:
        size, channels = fit.size, fit.channels
    frames, fps = read_frames(path, size, channels)
    F = frames.shape[0]
    if F < 3:
        raise ValueError(f"{path}: {F} frames; the predict demo needs at least 3")
    context = min(context or max(2, (3 * F) // 4), F - 1)
    run_dir = new_run_dir(out, f"predict-{Path(path).stem}")
    print(
        f"{path}: {F} frames at {fps:.2f} fps, resized to {channels}x{size}x{size}; run {run_dir}"
    )
    if ckpt is None:
        model = fit_on_video(path, context, fit, run_dir, device=device)
    x = frames_to_float(frames)
    one_step = one_step_predictions(model, x)
    with torch.no_grad():
        rolled = model.rollout(x[None, :context].to(target), horizon)[0].cpu()
    truth_roll = x[context : context + horizon]
    curves = {
        "model (one step)": psnr(one_step[None], x[None, 1:])[0].tolist(),
        "copy last frame": psnr(x[None, :-1], x[None, 1:])[0].tolist(),
    }
    roll_psnr = psnr(rolled[:, : truth_roll.shape[0]], truth_roll[None])[0].tolist()
    plot_lines(
        curves, run_dir / "psnr.png", f"next-frame PSNR, {Path(path).name}", "frame", "PSNR (dB)", 1
    )
    pred_full = torch.cat((x[:1], one_step))
    write_comparison(
        run_dir / "next_frame",
        [comparison_video(x, pred_full, context=1, name="prediction", scale=2)],
        fps,
    )
    truth_video = torch.cat((x[:context], truth_roll))
    pred_video = torch.cat((x[:context], rolled[0]))
    shown = slice(max(0, context - 8), None)
    write_comparison(
        run_dir / "rollout",
        [
            comparison_video(
                truth_video[shown],
                pred_video[shown],
                context=min(8, context),
                name="prediction",
                scale=2,
            )
        ],
        fps,
    )
    metrics = {
        "file": str(path),
        "frames": F,
        "context": context,
        "horizon": horizon,
        "fitted_on_video": ckpt is None,
        "psnr_one_step_mean": float(np.mean(curves["model (one step)"])),
        "psnr_copy_last_mean": float(np.mean(curves["copy last frame"])),
        "psnr_rollout": roll_psnr,
    }
    write_json(run_dir / "metrics.json", metrics)
    print(
        f"one-step PSNR {metrics['psnr_one_step_mean']:.2f} dB (copy last frame "
        f"{metrics['psnr_copy_last_mean']:.2f} dB); outputs in {run_dir}"
    )
    return run_dir


def class_names(run) -> list[str]:
    """Names of the classes of a classification run (digits for long-range recall)."""
    data = run.data
    if getattr(data, "source", None) == "manifest" and data.train is not None:
        from ttt_video.data.video.manifest import load_items

        try:
            return load_items(data.train)[1]
        except (OSError, ValueError):
            pass
    return [str(i) for i in range(run.model.num_classes)]


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
) -> Path:
    """Per-frame class probabilities of ``path`` under a ``video_classify`` checkpoint.

    Frames are resized to the checkpoint's ``image_size`` and ``channels``; ``size`` and
    ``channels``, when given, must equal them (``ValueError`` otherwise). The model runs on
    ``device`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``).

    Writes ``labels.csv`` (frame, top-1 class, its probability), ``labels_over_time.png``
    (probabilities of the classes that are ever top-3) and ``metrics.json``.
    """
    target = resolve_device(device)
    model, run = load_checkpoint_model(ckpt)
    if model.classifier is None:
        raise ValueError(f"--ckpt: {ckpt} has no classification head (num_classes = 0)")
    fmt = check_frame_format(model, ckpt, size, channels)
    model = model.to(target)
    names = class_names(run)
    probe_video(path)
    run_dir = new_run_dir(out, f"classify-{Path(path).stem}")
    state, probs = None, []
    for frames in tqdm(
        stream_video(path, chunk, fmt=fmt, allow_truncated=True), desc="classifying"
    ):
        result = model(frames[None].to(target), state)
        state = result.state
        probs.append(result.logits[0].softmax(-1).cpu())
    p = torch.cat(probs)
    top = p.argmax(-1)
    with (run_dir / "labels.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frame", "label", "probability"])
        for t in range(p.shape[0]):
            writer.writerow([t, names[int(top[t])], f"{float(p[t, top[t]]):.4f}"])
    shown = sorted(set(p.topk(min(3, p.shape[1]), dim=-1).indices.flatten().tolist()))[:10]
    curves = {names[k]: p[:, k].tolist() for k in shown}
    plot_lines(
        curves,
        run_dir / "labels_over_time.png",
        f"class probabilities, {Path(path).name}",
        "frame",
        "probability",
        0,
    )
    final = {"file": str(path), "frames": p.shape[0], "final_label": names[int(top[-1])]}
    write_json(run_dir / "metrics.json", {**final, "final_probability": float(p[-1, top[-1]])})
    print(
        f"{path}: {p.shape[0]} frames, label at the end: {final['final_label']}; outputs in {run_dir}"
    )
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
) -> Path:
    """Read every frame of ``path`` at native fps through the model, ``chunk`` frames per call.

    Records per chunk the wall time, the process's resident memory and the model state's
    size; writes ``stream.csv``, ``stream.png`` (frames/s and memory against the frame index)
    and ``metrics.json``. Without ``ckpt`` a randomly initialised ``preset`` is used (speed
    and memory do not depend on the weights). The model runs on ``device`` (``"auto"``,
    ``"cpu"``, ``"cuda"``, ``"cuda:N"``; the time of a chunk waits for the GPU).
    """
    target = resolve_device(device)
    if ckpt is not None:
        model, _ = load_checkpoint_model(ckpt)
    else:
        cfg = config_from_name(preset, image_size=size, channels=channels)
        model = VideoModel(cfg).eval()
    model = model.to(target)
    fmt = FrameFormat(size=model.cfg.image_size, channels=model.cfg.channels)
    info = probe_video(path)
    run_dir = new_run_dir(out, f"stream-{Path(path).stem}")
    rows, state, seen = [], None, 0
    bar = tqdm(
        stream_video(path, chunk, fmt=fmt, allow_truncated=True),
        total=info.num_frames // chunk,
        desc="streaming",
    )
    for frames in bar:
        t0 = time.perf_counter()
        state = model(frames[None].to(target), state).state
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        dt = time.perf_counter() - t0
        seen += frames.shape[0]
        rows.append((seen, frames.shape[0] / dt, rss_bytes() / 2**20, state.nbytes() / 2**20))
    return _write_stream_report(run_dir, path, info, model, rows)


def _write_stream_report(run_dir: Path, path, info, model: VideoModel, rows: list) -> Path:
    with (run_dir / "stream.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["frames_seen", "frames_per_s", "rss_mib", "state_mib"])
        writer.writerows(rows)
    fps = [r[1] for r in rows]
    rss = [r[2] for r in rows]
    _plot_stream(run_dir / "stream.png", [r[0] for r in rows], fps, rss, [r[3] for r in rows])
    half = len(rows) // 2
    metrics = {
        "file": str(path),
        "frames": rows[-1][0] if rows else 0,
        "native_fps": info.fps,
        "mixer": model.cfg.mixer,
        "frames_per_s_median": float(np.median(fps)),
        "rss_mib_peak": max(rss),
        "rss_mib_growth_second_half": rss[-1] - rss[half] if rows else 0.0,
        "state_mib_final": rows[-1][3] if rows else 0.0,
    }
    write_json(run_dir / "metrics.json", metrics)
    print(
        f"{path}: {metrics['frames']} frames, {metrics['frames_per_s_median']:.1f} frames/s (median), "
        f"peak RSS {metrics['rss_mib_peak']:.0f} MiB (+{metrics['rss_mib_growth_second_half']:.1f} MiB over "
        f"the second half), state {metrics['state_mib_final']:.3f} MiB; outputs in {run_dir}"
    )
    return run_dir


def _plot_stream(path: Path, frames: list, fps: list, rss: list, state: list) -> None:
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
