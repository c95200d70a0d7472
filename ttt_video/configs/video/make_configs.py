"""Write the video run files of this folder (each with a ``_debug`` sibling that runs on a CPU).

    python configs/video/make_configs.py

Runs: Moving-MNIST-style 10 -> 10 and 100 -> 100 prediction, long-range recall
classification, prediction on a folder of videos, classification on a labelled manifest;
each with TTT-Linear, TTT-MLP, LaCT (large-chunk TTT with window attention) and the attention
baseline (a windowed one for long range).
``quickstart.yaml`` is the run of ``ttt-video quickstart``: the 10 -> 10 TTT-Linear recipe with
the quickstart's length, time budget and validation (the command overrides only the run's
name, folder, step count and seed).

The training objective (loss, rollout training, readout) is ``model.objective``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
MIXERS = ("ttt_linear", "ttt_mlp", "attention", "lact")

PREDICT_MODEL = {"motion_input": True}
TEMPORAL_PRE_CONV = {"pre_conv": True, "temporal_conv": True}
"""10 -> 10: each block starts with a causal conv over each patch's last 4 frames (5% lower
validation MSE for TTT-Linear and attention alike at an equal budget, docs/results.md)."""
# 10 -> 10 also gates the TTT mixers' output by tanh(alpha) (`residual_gate`): chosen on the
# validation set with TTT-Linear (0.9% and 1.7% lower MSE, two seeds, docs/results.md);
# attention has no output gate.
PREDICT_OPTIM = {"lr": 3.0e-3, "weight_decay": 0.0, "warmup_fraction": 0.02}
CLASSIFY_OPTIM = {"lr": 2.0e-3, "weight_decay": 0.01, "warmup_fraction": 0.05}


def trainer(steps: int, val_every: int, val_batches: int) -> dict:
    return {
        "accelerator": "cpu",
        "max_steps": steps,
        "val_check_interval": val_every,
        "limit_val_batches": val_batches,
        "log_every": 10,
    }


def moving_mnist(mixer: str, variant: str, debug: bool) -> dict:
    size = "debug" if debug else "small"
    data = {"source": "moving_mnist", "variant": variant, "batch_size": 8}
    model = {"preset": f"video_{mixer}_{size}", **PREDICT_MODEL}
    objective = {"rollout_training": True}
    if variant == "standard":  # the quickstart's recipe
        model.update(TEMPORAL_PRE_CONV)
        if mixer != "attention":
            model["residual_gate"] = True
        objective.update(feedback_grad=True, context_weight=3.0)
    else:
        data["num_input"] = data["num_output"] = 100
    return {
        "task": "video_predict",
        "model": {**model, "objective": objective},
        "data": data,
        "optim": PREDICT_OPTIM,
        "trainer": trainer(*((4, 2, 2) if debug else (4000, 500, 25))),
    }


def quickstart(debug: bool) -> dict:
    """``ttt-video quickstart``: 1800 steps within 25 minutes, validated every 200 steps on 32
    sequences (0.7 s each on a CPU core: the curve in ``training.png`` costs ~1% of the run),
    through ``torch.compile`` (a step 1.3x faster than eager, ``benchmarks/call_overhead.md``,
    after 1 to 3 min of compiling by the machine, on an empty inductor cache; eager, with a
    warning, on a machine without a C++ compiler)."""
    run = moving_mnist("ttt_linear", "standard", debug)
    run["data"]["time_budget_s"] = 1500.0
    if not debug:
        run["model"]["compile"] = True
    run["trainer"] = trainer(*((4, 2, 2) if debug else (1800, 200, 4)))
    return run


def long_range(mixer: str, distance: int, debug: bool) -> dict:
    size = "debug" if debug else "small"
    model = {"preset": f"video_{mixer}_{size}", "image_size": 32, "patch_size": 32}
    model.update(num_classes=10, decoder="none", frame_mixer=False)
    if mixer != "attention":
        model.update(causal=True, frames_per_mini_batch=16)
    if mixer == "lact":  # a larger chunk (64 one-token frames) and a window as long
        model.update(frames_per_mini_batch=64, lact_window=64)
    data = {"source": "long_range", "distance": distance, "size": 32, "batch_size": 16}
    if mixer == "attention":
        model["objective"] = {"window_frames": 32}
    return {
        "task": "video_classify",
        "model": model,
        "data": data,
        "optim": CLASSIFY_OPTIM,
        "trainer": trainer(*((4, 2, 2) if debug else (1500, 250, 13))),
    }


def folder_predict(mixer: str, debug: bool) -> dict:
    size = "debug" if debug else "small"
    return {
        "task": "video_predict",
        "model": {
            "preset": f"video_{mixer}_{size}",
            "channels": 3,
            **PREDICT_MODEL,
            "objective": {"rollout_training": True},
        },
        "data": {
            "source": "folder",
            "path": "videos/train",
            "val_path": "videos/val",
            "channels": 3,
            "size": 64,
            "batch_size": 4,
        },
        "optim": PREDICT_OPTIM,
        "trainer": trainer(*((4, 2, 2) if debug else (3000, 500, 25))),
    }


def manifest_classify(mixer: str, debug: bool) -> dict:
    size = "debug" if debug else "base"
    model = {"preset": f"video_{mixer}_{size}", "channels": 3, "image_size": 112}
    model.update(patch_size=16, num_classes=101, decoder="none", frame_mixer=False)
    model["objective"] = {"readout": "mean"}
    return {
        "task": "video_classify",
        "model": model,
        "data": {
            "source": "manifest",
            "train": "videos/ucf101/train.csv",
            "val": "videos/ucf101/val.csv",
            "size": 112,
            "channels": 3,
            "num_frames": 32,
            "batch_size": 4,
        },
        "optim": CLASSIFY_OPTIM,
        "trainer": trainer(*((4, 2, 2) if debug else (20000, 1000, 50))),
    }


def runs() -> dict[str, dict]:
    out = {}
    for debug in (False, True):
        tag = "_debug" if debug else ""
        for mixer in MIXERS:
            out[f"mmnist_{mixer}{tag}"] = moving_mnist(mixer, "standard", debug)
            out[f"folder_predict_{mixer}{tag}"] = folder_predict(mixer, debug)
            out[f"manifest_classify_{mixer}{tag}"] = manifest_classify(mixer, debug)
            out[f"long_range_{mixer}{tag}"] = long_range(mixer, 200, debug)
        out[f"mmnist_long200_ttt_linear{tag}"] = moving_mnist("ttt_linear", "long200", debug)
        out[f"quickstart{tag}"] = quickstart(debug)
    return out


def main() -> None:
    header = "# Generated by configs/video/make_configs.py; edit that script and re-run it.\n"
    for name, run in runs().items():
        text = yaml.safe_dump(run, sort_keys=False, default_flow_style=False)
        (HERE / f"{name}.yaml").write_text(header + text)
    print(f"wrote {len(runs())} files to {HERE}")


if __name__ == "__main__":
    main()
