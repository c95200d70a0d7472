"""Typed run configs, the task registry, LightningModules, the optimiser and the runner (``fit``, ``validate``)."""
