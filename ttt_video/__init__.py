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
                evaluation, smoke check, reports
"""

__version__ = "0.1.0"
