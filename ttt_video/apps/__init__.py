"""The ``ttt-video`` command and what it runs: quickstart, demos, LM evaluation, smoke check, reports, export."""
