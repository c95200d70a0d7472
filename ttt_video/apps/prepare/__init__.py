"""``ttt-video prepare NAME``: one idempotent preparation per dataset, into the cache folder.

=========  ==============================================================================
``mnist``  the 5,000 real MNIST digits and the fixed Moving-MNIST-style val/test sets
``austen`` the six Jane Austen novels as token shards (byte-level, or ``--tokenizer bpe``)
``clips``  the four real video clips the demos and tests read
``text``   your own corpus (``.txt``, ``.jsonl``, ``.jsonl.zst``) -> token shards
``index``  a folder of videos -> a manifest CSV (frames, fps, size, label)
``all``    ``austen``, ``mnist`` and ``clips``: what the tests and the quickstart read
=========  ==============================================================================

The cache folder is ``$TTT_VIDEO_CACHE`` or ``~/.cache/ttt_video``. The scripts in the
repository's ``data_prep/`` call the same functions.
"""

from __future__ import annotations

import importlib

PREPARERS = {
    "mnist": "ttt_video.apps.prepare.mnist",
    "austen": "ttt_video.apps.prepare.austen",
    "clips": "ttt_video.apps.prepare.clips",
    "text": "ttt_video.apps.prepare.text",
    "index": "ttt_video.apps.prepare.index",
}
ALL = ("austen", "mnist", "clips")


def run_prepare(name: str, argv: list[str]) -> int:
    """Run preparation ``name`` (a key of ``PREPARERS`` or ``"all"``) with its own flags."""
    if name == "all":
        for each in ALL:
            print(f"== ttt-video prepare {each}", flush=True)
            code = run_prepare(each, [])
            if code != 0:
                return code
        return 0
    if name not in PREPARERS:
        raise ValueError(
            f"prepare: unknown dataset {name!r}; choose from {', '.join([*PREPARERS, 'all'])}"
        )
    return importlib.import_module(PREPARERS[name]).main(argv)
