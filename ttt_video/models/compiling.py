"""``torch.compile`` where it can run: the models' ``compile`` option and ``demo --compile``.

On a CPU, inductor writes C++ and builds it with the machine's compiler (``g++``, ``clang++``
or ``$CXX``); a machine without one (a slim container, say) would fail at the first forward,
deep inside training. ``compile_model`` checks first and then runs the model eager, with a
warning that says why.
"""

from __future__ import annotations

import warnings

from torch import nn


def missing_cpp_compiler() -> str | None:
    """Why inductor cannot build CPU code here (its own compiler search failed), or None."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        get_cpp_compiler()
    except Exception as err:  # the search raises when no candidate compiler runs
        return f"{type(err).__name__}: {str(err).strip().splitlines()[0]}"
    return None


def compile_model(model: nn.Module) -> bool:
    """Compile ``model`` in place (``nn.Module.compile``) and return True; on a CPU without a
    working C++ compiler, warn with the reason and leave it eager (False)."""
    parameter = next(model.parameters(), None)
    if parameter is None or parameter.device.type == "cpu":
        reason = missing_cpp_compiler()
        if reason is not None:
            warnings.warn(
                f"compile: no C++ compiler for torch.compile on this CPU ({reason}); the "
                "model runs eager (same results, slower). Install g++ or clang++, or set CXX.",
                stacklevel=2,
            )
            return False
    model.compile()
    return True
