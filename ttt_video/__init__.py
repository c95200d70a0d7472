"""ttt_video: Test-Time Training layers for long-context sequence modelling and long video.

Rooms of the package (each imports only from the ones above it)::

    kernels/    pure functions on tensors: the TTT computation in every form
    layers/     nn.Modules that own parameters and call a kernel
    encoders/   frame encoders (pixels -> tokens) and pixel decoders (tokens -> pixels)
    models/     whole networks built from a typed config; presets; save and load
    data/       text/ (token shards), video/ (readers, streams, writers, folders),
                synthetic/ (Moving-MNIST-style, long-range recall); shared epoch order
    train/      typed run configs, task registry, LightningModules, optimiser, runner
    apps/       the ``ttt-video`` command and what it runs: quickstart, demos, LM
                evaluation, smoke check, reports, export

``ttt_video.load(path, device)`` gives back a trained model from a run checkpoint or a
``save_pretrained`` folder (the heavy imports happen only when it is called).
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"


def load(path: str | Path, device: str = "cpu"):
    """A trained model, ready to use: ``LanguageModel`` or ``VideoModel`` in eval mode.

    Args:
        path: a run checkpoint (``runs/<name>/checkpoints/last.ckpt``, read with
            ``weights_only=True``; a folder holding ``meta.pt`` for a sharded run) or a
            ``save_pretrained`` / ``ttt-video export`` folder.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    The names of a classification model's classes, by label index: ``classes.json`` in the
    run folder, or ``ttt_video.train.runner.load_class_names(checkpoint)``.

    Raises:
        FileNotFoundError: ``path`` does not exist. ``ValueError``: a bad ``device``, or a
            file that is not one of ours (named in the message).
    """
    path = Path(path).expanduser()
    if path.is_dir() and not (path / "meta.pt").is_file():  # meta.pt: a sharded run checkpoint
        from ttt_video.models.pretrained import load_pretrained

        return load_pretrained(path, device)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: not found (expected a run checkpoint .ckpt or a save_pretrained folder)"
        )
    from ttt_video.train.runner import load_model

    return load_model(path, device)
