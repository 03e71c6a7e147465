"""MFU table lookups and the FLOPs-per-token estimate, checked against hand-computed figures."""

from __future__ import annotations

import pytest

from gpulens.errors import GpulensError
from gpulens.trainer.mfu import (
    decoder_params,
    gpu_model_key,
    mfu,
    peak_flops,
    transformer_flops_per_token,
)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA A100-PCIE-40GB", "a100"),
        ("NVIDIA A10G", "a10g"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA L40S", None),
        ("Tesla T4", None),
    ],
)
def test_device_names_map_to_table_keys(name: str, key: str | None) -> None:
    assert gpu_model_key(name) == key


def test_dense_peaks_not_sparse() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4e12)
    assert peak_flops("h100-pcie", "fp8") == pytest.approx(1513e12)
    assert peak_flops("a100", "bf16") == pytest.approx(312e12)
    assert peak_flops("l4", "fp16") == pytest.approx(121e12)


def test_unknown_gpu_or_precision_is_a_clear_error() -> None:
    with pytest.raises(GpulensError, match="peak_flops"):
        peak_flops("Tesla T4")
    with pytest.raises(GpulensError, match="no fp8 peak"):
        peak_flops("a100", "fp8")


def test_gpt2_124m_shape_and_flops_per_token() -> None:
    # GPT-2 small: 12 layers, d=768, vocab 50257, context 1024, tied embeddings.
    # 12 x (4 + 8) x 768² = 84,934,656; + 50257 x 768 = 38,597,376; + 1024 x 768 = 786,432.
    n = decoder_params(12, 768, 50257, seq_len=1024)
    assert n == 84_934_656 + 38_597_376 + 786_432
    # 6N + 12 L d T = 6 x 124,318,464 + 12 x 12 x 768 x 1024
    assert transformer_flops_per_token(n, 12, 768, 1024) == 6 * 124_318_464 + 113_246_208


def test_mfu_formula_and_guards() -> None:
    # 1e9 FLOPs/token x 500k tokens in 1 s on 4 GPUs of 1e15 = 5e14 / 4e15
    assert mfu(1e9, 500_000, 1.0, 1e15, gpus=4) == pytest.approx(0.125)
    assert mfu(1e9, 500_000, 0.0, 1e15) is None
