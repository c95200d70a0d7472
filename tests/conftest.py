"""Suite-wide set-up.

Triton kernels are tested on CPU tensors in the Triton interpreter. Triton 3.8 reads
``TRITON_INTERPRET`` when ``@triton.jit`` decorates a function, including its own device
library, decorated when ``triton.language`` is first imported (Lightning imports Triton
too), so the variable is set here, before any test module imports anything.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
