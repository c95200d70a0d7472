"""Run the Triton kernels in the interpreter so their tests work on CPU tensors.

Triton 3.8 reads ``TRITON_INTERPRET`` when ``@triton.jit`` decorates a function, and that
includes Triton's own device library (``tl.sum`` and friends), decorated when
``triton.language`` is first imported. In a whole-suite run Lightning imports Triton while
earlier test folders are collected, so setting the variable here is too late for the
library: if Triton is already loaded compiled, its Python modules (not the C extension)
(and ours, if loaded) are dropped and imported again with the variable set. The variable then stays set for the
process, which only matters to Triton kernels: no other test launches one (CPU tensors
never pick ``impl="triton"`` by ``"auto"``).
"""

import os
import sys

os.environ["TRITON_INTERPRET"] = "1"
if "triton.language" in sys.modules:
    from triton.runtime.interpreter import InterpretedFunction

    if not isinstance(sys.modules["triton.language"].standard.sum, InterpretedFunction):
        stale = ("triton", "ttt_video.kernels.triton")
        for name in [m for m in sys.modules if m.startswith(stale) and "._C" not in m]:
            del sys.modules[name]

import ttt_video.kernels.triton  # noqa: E402, F401  (decorates the kernels as interpreted)
