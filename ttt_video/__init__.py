"""ttt_video: Test-Time Training layers for long-context sequence modelling and long video.

Layers of the package (each imports only from the ones above it)::

    kernels/   pure functions on tensors: the TTT computation in every form
    layers/    nn.Modules that own parameters and call a kernel
    encoders/  frame encoders and pixel decoders
    models/    whole networks built from a typed config
    data/      readers, datasets, samplers, DataModules
    train/     LightningModules and the command line
"""

__version__ = "0.1.0"
