"""Suite-wide set-up.

Triton kernels are tested on CPU tensors in the Triton interpreter. Triton 3.8 reads
``TRITON_INTERPRET`` when ``@triton.jit`` decorates a function, including its own device
library, decorated when ``triton.language`` is first imported (Lightning imports Triton
too), so the variable is set here, before any test module imports anything.

The tests run many small tensor ops, for which one intra-op thread is faster and steadier
than several that wait on each other (and the 2-process DDP test would oversubscribe the
cores); ``OMP_NUM_THREADS`` is honoured when set.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402  (after the environment above)

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
