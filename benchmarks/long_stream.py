"""A TTT state over very long streams: 100,000 frames through the debug video models.

For TTT-Linear and TTT-MLP, each untrained (the network at initialisation, seed 0) and trained
(``ttt-video fit --config mmnist_{mixer}_debug`` for ``--train-steps`` steps, run here: 64x64
grey frames, 16 tokens per frame, one frame per TTT mini-batch), stream Moving-MNIST-style
frames generated on the fly (two held-out digits bouncing; new digits and paths every
``--scene`` frames, like the cuts of a real video), ``--chunk`` frames per call, and record
after every call:

- the norm of each TTT layer's inner weights (the state's ``W1, b1[, W2, b2]``, all heads),
  and of the groups ``(W, b)`` of each inner layer: the inner loss is invariant to scaling
  TTT-Linear's ``(W1, b1)`` and TTT-MLP's ``(W2, b2)`` (not TTT-MLP's ``(W1, b1)``: GELU is
  not homogeneous, and ``b2`` would have to scale too);
- the range of the next-frame predictions (before clamping) and of the backbone features;
- the one-step MSE per frame (sum over the 64x64 pixels) against the true next frame, and
  the copy-last-frame baseline's on the same frames.

Why the norm grows, and how fast: the inner loss ``1/2 ||LN(f(k)) - (v - k)||^2`` does not
change when a scale-invariant group ``theta`` is multiplied by ``c > 0`` (LayerNorm removes the
scale), so its gradient ``g`` is orthogonal to ``theta`` and has norm ``G / ||theta||``
(``G``: the gradient at unit norm). A step ``theta - eta g`` therefore gives
``||theta'||^2 = ||theta||^2 + eta^2 G^2 / ||theta||^2``, and ``||theta||^4`` grows by at
most ``2 eta^2 G^2 + O(1/||theta||^4)`` per step. While ``G`` does not grow along the stream,
``||theta_t||^4 <= ||theta_s||^4 + c (t - s)`` with ``c`` no more than the average increment
before ``s``, hence ``||theta_t|| / ||theta_s|| <= (t / s)^(1/4)``: a tenfold longer stream at
most 1.78x the norm. LayerNorm's epsilon (1e-6) breaks the invariance slightly, always
inwards where measured: a pull of ``-2 eta <g, theta>`` per step that is also ``O(1/||theta||^2)``, so
the norm can shrink once ``G`` is small (measured: it vanishes with the epsilon), never grow
faster. The report gives this ratio from 1k, 10k, ... frames to the end for every group.
TTT-MLP's ``(W1, b1)`` has no such law: its steps are not orthogonal to it.

``--keep-inner-norm`` builds and trains the models with ``model.keep_inner_norm`` (each inner
layer's ``(W, b)`` rescaled to its norm at every commit, kernels/README.md section 15): the
norms should then stay at their initial values (ratio 1, exponent 0 in the growth-law table).

    python benchmarks/long_stream.py                              # 100,000 frames, 4 models
    python benchmarks/long_stream.py --frames 20000 --mixers ttt_linear --train-steps 0
    python benchmarks/long_stream.py --keep-inner-norm            # the same with the option

The report (``report.md``, ``metrics.json``, ``long_stream.png``) goes to a new folder under
``--out``, which is printed, with the load average and the machine's fp32 matmul rate. Needs
the MNIST digits (``ttt-video prepare mnist``). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ttt_video.apps.demo import load_checkpoint_model
from ttt_video.apps.report import load_average, new_run_dir, save_report
from ttt_video.apps.series import BinnedSeries
from ttt_video.data.fetch import load_mnist_digits
from ttt_video.data.synthetic.moving_mnist import moving_digits, split_digits
from ttt_video.io_utils import pyplot, write_json
from ttt_video.models.video import VideoModel
from ttt_video.train.config import config_path
from ttt_video.train.peak_flops import measure_peak_flops
from ttt_video.train.runner import fit
from ttt_video.train.tasks import load_run_config

SIZE = 64
"""Frame side of the ``mmnist_*_debug`` runs."""
REPORTED = (100, 1_000, 10_000, 100_000)
"""Frame indices of the report's tables (those before the end, and the end)."""
GROUPS = {
    "ttt_linear": {"(W1, b1)": ((0,), True)},
    "ttt_mlp": {"(W1, b1)": ((0,), False), "(W2, b2)": ((1,), True)},
}
"""Per mixer, groups of inner layers (indices into the state's weights and biases) and whether
the inner loss is invariant to scaling the group."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--mixers", nargs="+", default=["ttt_linear", "ttt_mlp"], choices=list(GROUPS))
    p.add_argument("--train-steps", type=int, default=600, help="0: untrained models only")
    p.add_argument("--chunk", type=int, default=100, help="frames per model call")
    p.add_argument("--scene", type=int, default=1_000, help="frames between cuts")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--keep-inner-norm",
        action="store_true",
        help="build and train the models with model.keep_inner_norm (inner weights' norm kept)",
    )
    p.add_argument("--out", default="runs/long_stream")
    return p.parse_args(argv)


def models(
    mixer: str, train_steps: int, folder: Path, keep_inner_norm: bool = False
) -> dict[str, VideoModel]:
    """``{"untrained": ..., "trained": ...}`` networks of the ``mmnist_{mixer}_debug`` run
    (both with ``model.keep_inner_norm`` as given)."""
    overrides = {
        "model.keep_inner_norm": keep_inner_norm,
        "out_dir": str(folder),
        "trainer.max_steps": max(train_steps, 1),
        "trainer.val_check_interval": max(train_steps, 1),
        "trainer.progress_bar": False,
    }
    run = load_run_config(config_path(f"mmnist_{mixer}_debug"), overrides)
    torch.manual_seed(0)
    out = {"untrained": VideoModel(run.model.network()).eval()}
    if train_steps:
        fit(run)
        out["trained"] = load_checkpoint_model(run.run_dir / "checkpoints" / "last.ckpt")[0]
    return out


def scenes(frames: int, scene: int, chunk: int) -> Iterator[torch.Tensor]:
    """``frames`` Moving-MNIST-style frames, ``chunk`` at a time: uint8 ``[chunk, 1, 64, 64]``.

    Held-out (test-pool) digits; every ``scene`` frames two new digits on new paths.
    """
    images, labels = load_mnist_digits()
    pool = images[split_digits(labels)[1]]
    rng = np.random.default_rng(0)
    current, offset = None, 0
    for start in range(0, frames, chunk):
        out, wanted = [], min(chunk, frames - start)
        while len(out) < wanted:
            if current is None or offset == len(current):
                current, offset = moving_digits(rng, pool, scene, size=SIZE), 0
            take = min(wanted - len(out), len(current) - offset)
            out.extend(current[offset : offset + take])
            offset += take
        yield torch.from_numpy(np.stack(out))[:, None]


def group_norms(model: VideoModel, state) -> dict[str, float]:
    """Norms of every inner tensor and scale-invariant group, per block (``b0 W1``, ...)."""
    norms = {}
    for i, block in enumerate(state.backbone.blocks):
        ttt = block.mixer.ttt
        for k, (w, b) in enumerate(zip(ttt.weights, ttt.biases)):
            norms[f"b{i} W{k + 1}"] = float(w.norm())
            norms[f"b{i} b{k + 1}"] = float(b.norm())
        for name, (layers, _) in GROUPS[model.cfg.mixer].items():
            squares = sum(
                ttt.weights[k].square().sum() + ttt.biases[k].square().sum() for k in layers
            )
            norms[f"b{i} {name}"] = math.sqrt(float(squares))
    return norms


@torch.no_grad()
def stream(model: VideoModel, args) -> list[dict]:
    """One row per call: frames seen, norms, prediction/feature ranges, one-step MSEs."""
    rows, state, t0 = [], None, time.perf_counter()
    for frames in scenes(args.frames, args.scene, args.chunk):
        out = model(frames[None], state)
        state = out.state
        x = frames[None].float() / 255
        pred = out.next_frames
        rows.append(
            {
                "frames": state.frames,
                **group_norms(model, state),
                "pred_min": float(pred.min()),
                "pred_max": float(pred.max()),
                "feature_absmax": float(out.features.abs().max()),
                "mse": float((pred[:, :-1].clamp(0, 1) - x[:, 1:]).square().sum((2, 3, 4)).mean()),
                "mse_copy": float((x[:, :-1] - x[:, 1:]).square().sum((2, 3, 4)).mean()),
                "finite": bool(all(torch.isfinite(t).all() for t in _state_tensors(state))),
            }
        )
    rows[-1]["seconds"] = time.perf_counter() - t0
    return rows


def _state_tensors(state):
    for block in state.backbone.blocks:
        ttt = block.mixer.ttt
        yield from ttt.weights + ttt.biases + ttt.grad_weights + ttt.grad_biases


def at(rows: list[dict], frame: int) -> dict:
    """The row after ``frame`` frames (the first row at or past it)."""
    return next(r for r in rows if r["frames"] >= frame)


def window_mean(rows: list[dict], key: str, end: int, width: int) -> float:
    """Mean of ``key`` over the rows of frames ``(end - width, end]``."""
    values = [r[key] for r in rows if end - width < r["frames"] <= end]
    return float(np.mean(values))


def law_cell(rows: list[dict], key: str, m: int, frames: int, invariant: bool) -> str:
    """``ratio (<= bound: yes|no), exp. e`` of ``key``'s norm after ``frames`` frames over
    its norm after ``m`` (the bound only for a scale-invariant group)."""
    ratio = rows[-1][key] / at(rows, m)[key]
    cell = f"{ratio:.2f}"
    if invariant:
        bound = (frames / m) ** 0.25
        cell += f" (<= {bound:.2f}: {'yes' if ratio <= bound else '**no**'})"
    return cell + f", exp. {math.log(ratio) / math.log(frames / m):.2f}"


def report(results: dict[str, list[dict]], info: dict, args) -> str:
    """The Markdown report: norms and outputs at ``REPORTED`` frames, growth-law checks."""
    marks = sorted({f for f in REPORTED if f < args.frames} | {args.frames})
    lines = [
        f"{args.frames:,} frames of Moving-MNIST-style video (64x64 grey, held-out digits, a cut "
        f"every {args.scene:,} frames), {args.chunk} frames per call, one thread, "
        f"keep_inner_norm {'on' if args.keep_inner_norm else 'off'}. Machine "
        f"reference: fp32 matmul {info['gflops']:.1f} GFLOP/s; load average "
        f"{info['load_start']} at the start, {info['load_end']} at the end.",
        "",
        "State norms (all heads) after the given number of frames:",
        "",
        "| model | tensor | " + " | ".join(f"{f:,}" for f in marks) + " |",
        "|---|---|" + "---:|" * len(marks),
    ]
    for name, rows in results.items():
        keys = [k for k in rows[0] if k.startswith("b") and " " in k]
        for key in keys:
            cells = " | ".join(f"{at(rows, f)[key]:.3f}" for f in marks)
            lines.append(f"| {name} | {key} | {cells} |")
    lines += [
        "",
        "Outputs: prediction range (before clamping), largest |feature|, one-step MSE/frame "
        "(mean over the last 1,000 frames, or all, before the mark; copy-last-frame's in "
        "brackets):",
        "",
        "| model | " + " | ".join(f"{f:,}" for f in marks) + " | state finite |",
        "|---|" + "---|" * len(marks) + "---|",
    ]
    for name, rows in results.items():
        cells = []
        for f in marks:
            r = at(rows, f)
            mse = window_mean(rows, "mse", r["frames"], 1_000)
            copy = window_mean(rows, "mse_copy", r["frames"], 1_000)
            cells.append(
                f"[{r['pred_min']:.2f}, {r['pred_max']:.2f}], {r['feature_absmax']:.1f}, "
                f"{mse:.1f} ({copy:.1f})"
            )
        finite = all(r["finite"] for r in rows)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'yes' if finite else '**no**'} |")
    edges = [0, *[m for m in REPORTED if 100 < m < args.frames], args.frames]
    lines += [
        "",
        "One-step MSE of the model over copy-last-frame's on the same frames (below 1: better "
        "than copying), by stretch of the stream:",
        "",
        "| model | " + " | ".join(f"frames {a:,}-{b:,}" for a, b in zip(edges, edges[1:])) + " |",
        "|---|" + "---:|" * (len(edges) - 1),
    ]
    for name, rows in results.items():
        cells = []
        for a, b in zip(edges, edges[1:]):
            stretch = [r for r in rows if a < r["frames"] <= b]
            ratio = sum(r["mse"] for r in stretch) / sum(r["mse_copy"] for r in stretch)
            cells.append(f"{ratio:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    starts = [m for m in REPORTED if 1_000 <= m < args.frames]
    lines += [
        "",
        f"Growth law: norm after {args.frames:,} frames / norm after m frames, for each group, "
        "against the bound (frames / m)^(1/4) of the scale-invariant ones (in brackets; "
        "TTT-MLP's (W1, b1) has no invariance, hence no bound), and the growth exponent "
        "log(ratio) / log(frames / m):",
        "",
        "| model | group | " + " | ".join(f"from m = {m:,}" for m in starts) + " |",
        "|---|---|" + "---|" * len(starts),
    ]
    for name, rows in results.items():
        for group, (_, invariant) in GROUPS[name.split()[0]].items():
            for key in [k for k in rows[0] if k.endswith(group)]:
                cells = [law_cell(rows, key, m, args.frames, invariant) for m in starts]
                lines.append(f"| {name} | {key} | " + " | ".join(cells) + " |")
    seconds = ", ".join(f"{name} {rows[-1]['seconds']:.0f} s" for name, rows in results.items())
    lines += ["", f"Streaming time: {seconds}."]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, list[dict]], path: Path) -> None:
    """Group norms (log-log), prediction range and one-step MSE (means over at most 100 bins
    of calls) against the frame; trained models solid, untrained dashed."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, rows in results.items():
        style = "--" if "untrained" in name else "-"
        x = [r["frames"] for r in rows]
        for key in [k for k in rows[0] if "(" in k]:
            axes[0].plot(x, [r[key] for r in rows], style, label=f"{name} {key}", lw=0.9)
        line = axes[1].plot(x, [r["pred_max"] for r in rows], style, label=name, lw=0.7)[0]
        axes[1].plot(x, [r["pred_min"] for r in rows], style, color=line.get_color(), lw=0.7)
        mse = BinnedSeries(2, 100)
        for r in rows:
            mse.add(r["frames"], r["mse"])
        axes[2].plot(*mse.means().T, style, label=name, lw=0.9)
    axes[0].set(xscale="log", yscale="log", title="inner-weight norm", ylabel="norm")
    axes[1].set(xscale="log", title="next-frame prediction range (before clamping)")
    axes[2].set(xscale="log", title="one-step MSE per frame (bin means)", ylabel="MSE/frame")
    for ax in axes:
        ax.set_xlabel("frame")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=5, ncol=2)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Train (when asked), stream every model, then write and print the report."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = new_run_dir(args.out, "run")
    info = {"load_start": load_average()}
    info["gflops"] = measure_peak_flops(torch.device("cpu"), torch.float32) / 1e9
    results = {}
    for mixer in args.mixers:
        trained = models(mixer, args.train_steps, folder / "train", args.keep_inner_norm)
        for kind, model in trained.items():
            name = f"{mixer} {kind}"
            results[name] = stream(model, args)
            print(name, {k: round(v, 3) for k, v in results[name][-1].items()}, flush=True)
            write_json(folder / "metrics.json", {"results": results, **info})
    info["load_end"] = load_average()
    write_json(folder / "metrics.json", {"results": results, **info, "args": vars(args)})
    plot(results, folder / "long_stream.png")
    text = report(results, info, args)
    return save_report(folder, text)


if __name__ == "__main__":
    raise SystemExit(main())
