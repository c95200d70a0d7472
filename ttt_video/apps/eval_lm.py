"""Language-model evaluation from checkpoints: loss, perplexity, per-position loss, samples.

Letters: ``B`` batch, ``T`` tokens per block, ``N`` new tokens.

The per-position loss (the paper's Figure 2, right) is the mean next-token loss at each
index ``t`` of the validation blocks: a model that uses its context well keeps lowering
it as ``t`` grows. :func:`eval_lm` writes, for one or more checkpoints::

    summary.csv              label, checkpoint, parameters, tokens, val_loss, val_ppl
    per_position_loss.csv    position, then one column per model
    per_position_bands.csv   mean loss over doubling bands of positions (0, 1, 2-3, 4-7, ...)
    per_position_loss.png    one curve per model

The bands average many positions each, so whether a curve still falls late in the block
reads off one row per band instead of a noisy curve.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from ttt_video.data.text.dataset import TokenBlockDataset
from ttt_video.io_utils import pyplot
from ttt_video.models.compiling import compile_model
from ttt_video.train.runner import load_module


@dataclass
class LMEval:
    """Evaluation of one checkpoint."""

    label: str
    checkpoint: str
    parameters: int
    tokens: int
    loss: float
    per_position: list[float]

    @property
    def ppl(self) -> float:
        """Perplexity ``exp(loss)``."""
        return math.exp(self.loss)

    def bands(self) -> list[float]:
        """Mean loss over each band of :func:`position_bands`."""
        return [
            sum(self.per_position[a:b]) / (b - a) for a, b in position_bands(len(self.per_position))
        ]


def band_table(results: list[LMEval]) -> list[tuple[int, int, list[float | None]]]:
    """``(first, last, mean per result)`` for each band of the longest curve.

    A result whose curve is shorter has ``None`` in the bands it does not reach.
    """
    longest = max(len(r.per_position) for r in results)
    means = [r.bands() for r in results]
    return [
        (a, b - 1, [m[i] if i < len(m) else None for m in means])
        for i, (a, b) in enumerate(position_bands(longest))
    ]


def position_bands(length: int) -> list[tuple[int, int]]:
    """Doubling bands ``[0, 1), [1, 2), [2, 4), [4, 8), ...`` covering ``range(length)``.

    The last band ends at ``length``.
    """
    bands, start, end = [], 0, 1
    while start < length:
        bands.append((start, min(end, length)))
        start, end = end, 2 * end
    return bands


@torch.no_grad()
def per_position_loss(
    model: torch.nn.Module, batches, max_batches: int | None
) -> tuple[Tensor, int]:
    """Mean loss at each position over ``batches`` of ``(inputs, targets): [B, T]`` (moved to
    the model's device).

    Returns ``([T], number of blocks)`` on the model's device.
    """
    device = next(model.parameters()).device
    total, blocks = None, 0
    for i, (inputs, targets) in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        inputs, targets = inputs.to(device), targets.to(device)
        logits, _ = model(inputs)
        loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # [B, T]
        total = loss.sum(0).double() if total is None else total + loss.sum(0).double()
        blocks += inputs.shape[0]
    if total is None:
        raise ValueError("batches: the validation split gave no batch")
    return (total / blocks).float(), blocks


def evaluate_checkpoint(
    ckpt: str | Path,
    label: str | None,
    block_len: int | None,
    max_batches: int | None,
    stride: int | None = None,
    device: str = "auto",
) -> LMEval:
    """Validation loss and per-position loss of one LM checkpoint, computed on ``device``
    (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``).

    ``block_len`` evaluates at another context than the training one; ``stride`` starts a
    block every ``stride`` tokens instead of every ``block_len`` (overlapping windows: each
    token is scored at about ``block_len / stride`` positions, so the per-position curve
    compares nearly the same tokens read with more or less context; the ``tokens`` count
    then counts a token once per window).
    """
    run, module, datamodule = load_module(ckpt, device)
    if run.task != "lm":
        raise ValueError(f"--ckpt: {ckpt} is a {run.task!r} checkpoint, not a language model")
    val = TokenBlockDataset(datamodule.data_dir, "val", block_len or datamodule.block_len, stride)
    batches = DataLoader(val, batch_size=datamodule.batch_size)
    curve, blocks = per_position_loss(module.model, batches, max_batches)
    return LMEval(
        label or str(run.name),
        str(ckpt),
        module.model.num_parameters(),
        blocks * curve.numel(),
        float(curve.mean()),
        curve.tolist(),
    )


def write_results(results: list[LMEval], out_dir: Path) -> None:
    """Write ``summary.csv``, ``per_position_loss.csv``, ``per_position_bands.csv`` and
    ``per_position_loss.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "checkpoint", "parameters", "tokens", "val_loss", "val_ppl"])
        for r in results:
            w.writerow(
                [r.label, r.checkpoint, r.parameters, r.tokens, f"{r.loss:.5f}", f"{r.ppl:.4f}"]
            )
    longest = max(len(r.per_position) for r in results)
    with open(out_dir / "per_position_loss.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["position", *(r.label for r in results)])
        for t in range(longest):
            row = [f"{r.per_position[t]:.5f}" if t < len(r.per_position) else "" for r in results]
            w.writerow([t, *row])
    with open(out_dir / "per_position_bands.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["first", "last", *(r.label for r in results)])
        for first, last, means in band_table(results):
            w.writerow([first, last, *("" if m is None else f"{m:.5f}" for m in means)])
    plot_per_position(results, out_dir / "per_position_loss.png")


def plot_per_position(results: list[LMEval], path: Path) -> None:
    """Per-position loss (log-scaled position axis): each model's raw curve, thin, and its
    band means (:func:`position_bands`), bold, at the geometric middle of each band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in results:
        positions = range(1, len(r.per_position) + 1)
        (raw,) = ax.plot(positions, r.per_position, lw=0.6, alpha=0.35)
        middles = [math.sqrt((a + 1) * b) for a, b in position_bands(len(r.per_position))]
        ax.plot(
            middles, r.bands(), "o-", color=raw.get_color(), lw=2, ms=4,
            label=f"{r.label} (val {r.loss:.3f})",
        )  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("token index in the block (1-based)")
    ax.set_ylabel("mean validation loss (nats)")
    ax.set_title("Loss by position in context (thin: each position; dots: band means)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def eval_lm(
    ckpts: list[str],
    out_dir: str | Path,
    labels: list[str] | None = None,
    block_len: int | None = None,
    max_batches: int | None = None,
    stride: int | None = None,
    device: str = "auto",
) -> list[LMEval]:
    """Evaluate each checkpoint, write the CSVs and the plot into ``out_dir``; return results.

    ``block_len``, ``stride`` and ``device`` as in :func:`evaluate_checkpoint`.
    """
    if labels is not None and len(labels) != len(ckpts):
        raise ValueError(f"--label: got {len(labels)} labels for {len(ckpts)} checkpoints")
    results = [
        evaluate_checkpoint(
            c, labels[i] if labels else None, block_len, max_batches, stride, device
        )
        for i, c in enumerate(ckpts)
    ]
    write_results(results, Path(out_dir))
    return results


def generate_text(
    ckpt: str | Path,
    prompt: str,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int = 0,
    device: str = "auto",
    compile: bool = False,
) -> str:
    """Continue ``prompt`` with the model of an LM checkpoint, run on ``device`` (``"auto"``,
    ``"cpu"``, ``"cuda"``, ``"cuda:N"``; the same seed draws other tokens on another device
    type), through ``torch.compile`` with ``compile`` (the same tokens; it pays for long
    continuations: the first tokens wait for the compiler); returns the new text only."""
    run, module, datamodule = load_module(ckpt, device)
    if run.task != "lm":
        raise ValueError(f"--ckpt: {ckpt} is a {run.task!r} checkpoint, not a language model")
    if compile:
        compile_model(module.model)
    tokenizer = datamodule.tokenizer()
    ids = tokenizer.encode(prompt) or [tokenizer.eos_id]
    generator = torch.Generator(module.device).manual_seed(seed)
    out = module.model.generate(
        torch.tensor([ids], device=module.device),
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        eos_id=tokenizer.eos_id,
        generator=generator,
    )
    return tokenizer.decode(out[0, len(ids) :].tolist())
