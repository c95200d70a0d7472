"""Peak matmul FLOP/s of one device, the denominator of the model FLOP utilisation (MFU).

For a known NVIDIA GPU the peak is its datasheet's dense rate (no structured sparsity) in
the dtype the run's matmuls use (:data:`DATASHEET_TFLOPS`, matched on
``torch.cuda.get_device_name()``); GeForce cards at the rate with fp32 accumulation, which
is what PyTorch's matmuls use. For another device (an unknown GPU, a CPU) it is measured:
the best rate of a square matmul, an achievable peak, so MFU then reads higher than against
a datasheet. :func:`peak_flops` says which, for the log.
"""

from __future__ import annotations

import re
import time

import torch

MATMUL_DTYPES = ("fp32", "tf32", "bf16", "fp16")
"""The dtypes a matmul runs in: fp32 on CUDA cores, tf32 / bf16 / fp16 on tensor cores."""

DATASHEET_TFLOPS: tuple[tuple[str, str, dict[str, float]], ...] = (
    # (pattern searched in the device name, model, dense TFLOP/s by dtype); first match wins.
    # A dtype missing from a row has no tensor-core path there (measured instead).
    (r"GH200", "GH200", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}),
    (r"H200 NVL", "H200 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (r"H200", "H200 SXM", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}),
    (r"H100 NVL", "H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (r"H100 PCIe", "H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5}),
    (r"H100", "H100 SXM", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}),
    (r"A100", "A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    (r"\bA10\b", "A10", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}),
    (r"L40S", "L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05}),
    (r"\bL40\b", "L40", {"fp32": 90.5, "tf32": 90.5, "bf16": 181.05, "fp16": 181.05}),
    (r"\bL4\b", "L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    (r"RTX 4090(?! D)", "RTX 4090", {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2}),
    (r"RTX 3090(?! Ti)", "RTX 3090", {"fp32": 35.6, "tf32": 35.6, "bf16": 71.0, "fp16": 71.0}),
    (r"V100S", "V100S PCIe", {"fp32": 16.4, "tf32": 16.4, "fp16": 130.0}),
    (r"V100-PCIE", "V100 PCIe", {"fp32": 14.0, "tf32": 14.0, "fp16": 112.0}),
    (r"V100", "V100 SXM2", {"fp32": 15.7, "tf32": 15.7, "fp16": 125.0}),
    (r"\bT4\b", "T4", {"fp32": 8.1, "tf32": 8.1, "fp16": 65.0}),
)
"""Dense matmul peaks from NVIDIA's datasheets (the sparse figures halved). On V100 and T4,
tf32 is the fp32 rate (no tf32 units) and bf16 has no tensor-core path."""


def matmul_dtype(precision: str, allow_tf32: bool) -> str:
    """The dtype a run's matmuls use: ``"bf16"`` for ``bf16-mixed``, else ``"tf32"`` when
    PyTorch lets fp32 matmuls use tf32 (``torch.backends.cuda.matmul.allow_tf32``), else
    ``"fp32"``."""
    if precision.startswith("bf16"):
        return "bf16"
    return "tf32" if allow_tf32 else "fp32"


def datasheet_peak_flops(device_name: str, dtype: str) -> tuple[str, float] | None:
    """``(model, FLOP/s)``: the dense datasheet peak of the GPU called ``device_name`` (as
    ``torch.cuda.get_device_name()`` spells it) in ``dtype`` (one of :data:`MATMUL_DTYPES`);
    None for a GPU not in :data:`DATASHEET_TFLOPS` or a dtype it has no rate for."""
    if dtype not in MATMUL_DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(MATMUL_DTYPES)}, got {dtype!r}")
    for pattern, model, tflops in DATASHEET_TFLOPS:
        if re.search(pattern, device_name):
            return (model, tflops[dtype] * 1e12) if dtype in tflops else None
    return None


def measure_peak_flops(device: torch.device, dtype: torch.dtype, n: int = 1024) -> float:
    """Best FLOP/s of ``[n, n] @ [n, n]`` over a few repeats on ``device`` in ``dtype``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ a
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


TORCH_DTYPES = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def peak_flops(device: torch.device, dtype: str) -> tuple[float, str]:
    """Peak matmul FLOP/s of ``device`` in ``dtype`` and where it comes from (for the log):
    the datasheet of a known GPU, else measured with :func:`measure_peak_flops`."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    found = datasheet_peak_flops(name, dtype) if device.type == "cuda" else None
    if found is not None:
        model, flops = found
        return flops, f"datasheet of the {model} ({name}), {dtype} dense"
    flops = measure_peak_flops(device, TORCH_DTYPES[dtype])
    return flops, f"measured: best 1024^3 matmul in {dtype} on {name} (no datasheet entry)"
