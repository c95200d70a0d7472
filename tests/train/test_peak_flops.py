"""The MFU denominator: datasheet peaks of known GPUs by the name CUDA reports (expected
values typed from NVIDIA's datasheets, dense), measured elsewhere, and the log says which."""

from __future__ import annotations

import logging

import pytest
import torch

from ttt_video.train import peak_flops as pf
from ttt_video.train.runner import Throughput


@pytest.mark.parametrize(
    "name, dtype, model, tflops",
    [
        ("NVIDIA H100 80GB HBM3", "bf16", "H100 SXM", 989.5),
        ("NVIDIA H100 80GB HBM3", "tf32", "H100 SXM", 494.5),
        ("NVIDIA H100 PCIe", "bf16", "H100 PCIe", 756.5),
        ("NVIDIA H100 NVL", "fp16", "H100 NVL", 835.5),
        ("NVIDIA H200", "bf16", "H200 SXM", 989.5),
        ("NVIDIA GH200 480GB", "fp32", "GH200", 67.0),
        ("NVIDIA A100-SXM4-80GB", "bf16", "A100", 312.0),
        ("NVIDIA A100-PCIE-40GB", "tf32", "A100", 156.0),
        ("NVIDIA A10", "bf16", "A10", 125.0),
        ("NVIDIA L4", "bf16", "L4", 121.0),
        ("NVIDIA L40S", "bf16", "L40S", 362.05),
        ("NVIDIA L40", "bf16", "L40", 181.05),
        ("NVIDIA GeForce RTX 4090", "bf16", "RTX 4090", 165.2),
        ("NVIDIA GeForce RTX 3090", "fp32", "RTX 3090", 35.6),
        ("Tesla V100-SXM2-16GB", "fp16", "V100 SXM2", 125.0),
        ("Tesla V100-PCIE-32GB", "fp16", "V100 PCIe", 112.0),
        ("Tesla T4", "fp16", "T4", 65.0),
    ],
)
def test_datasheet_peak_of_known_gpus(name, dtype, model, tflops):
    assert pf.datasheet_peak_flops(name, dtype) == (model, pytest.approx(tflops * 1e12))


@pytest.mark.parametrize(
    "name, dtype",
    [
        ("NVIDIA A10G", "bf16"),  # not an A10
        ("NVIDIA GeForce RTX 3090 Ti", "bf16"),
        ("NVIDIA GeForce RTX 4090 D", "bf16"),
        ("Tesla T4", "bf16"),  # no bf16 tensor cores
        ("Tesla V100-SXM2-16GB", "bf16"),
        ("NVIDIA B200", "bf16"),
        ("CPU", "fp32"),
    ],
)
def test_unknown_gpus_and_missing_rates_have_no_datasheet_peak(name, dtype):
    assert pf.datasheet_peak_flops(name, dtype) is None


def test_matmul_dtype_follows_precision_and_tf32():
    assert pf.matmul_dtype("bf16-mixed", allow_tf32=False) == "bf16"
    assert pf.matmul_dtype("32", allow_tf32=True) == "tf32"
    assert pf.matmul_dtype("32", allow_tf32=False) == "fp32"
    with pytest.raises(ValueError, match="dtype: expected one of fp32, tf32, bf16, fp16"):
        pf.datasheet_peak_flops("NVIDIA H100 PCIe", "fp8")


def test_known_gpu_takes_the_datasheet_without_measuring(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 PCIe")
    monkeypatch.setattr(pf, "measure_peak_flops", lambda *a: pytest.fail("measured"))
    flops, source = pf.peak_flops(torch.device("cuda"), "bf16")
    assert flops == pytest.approx(756.5e12)
    assert source == "datasheet of the H100 PCIe (NVIDIA H100 PCIe), bf16 dense"


class Module:
    device = torch.device("cpu")


@pytest.mark.parametrize(
    "given, logged",
    [
        (None, "measured: best 1024^3 matmul in fp32 on CPU"),
        (2e12, "2 TFLOP/s per device (trainer.peak_flops)"),
    ],
)
def test_throughput_logs_where_the_peak_comes_from(given, logged, caplog):
    callback = Throughput(log_every=1, peak_flops=given, precision="32")
    with caplog.at_level(logging.INFO):
        callback.on_train_start(None, Module())
    assert logged in caplog.text
    assert callback.peak_flops > 0
