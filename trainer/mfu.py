"""Model FLOPs utilization: dense peak FLOP/s per GPU model and precision, and FLOPs per token.

MFU = flops_per_token x tokens/s / (peak FLOP/s of one GPU x GPUs in use) (PaLM, Chowdhery et al.
2022, §4.1 and Appendix B). Peaks are **dense** (no 2:4 sparsity): NVIDIA's datasheets print the
sparse figure first for tensor precisions, and quoting it halves every MFU.

Sources (FLOP/s per GPU, dense):
- A100 (SXM4 and PCIe, 40 and 80 GB): NVIDIA A100 Tensor Core GPU datasheet,
  https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf
  (FP64 9.7 T, FP32 19.5 T, TF32 156 T, BF16/FP16 312 T, INT8 624 T).
- H100 SXM5 and H100 PCIe: NVIDIA H100 Tensor Core GPU datasheet,
  https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet
  (SXM: FP32 67 T, TF32 494.7 T, BF16/FP16 989.4 T, FP8 1978.9 T;
   PCIe: FP32 51 T, TF32 378 T, BF16/FP16 756.5 T, FP8 1513 T; the datasheet's 989/1979 ... are "with
   sparsity" x2).
- H200 SXM: NVIDIA H200 datasheet, https://nvdam.widen.net/s/nb5zzzsjdf/hpc-datasheet-sc23-h200-datasheet-3002446
  (the same Hopper die and clocks as H100 SXM: BF16/FP16 989.4 T dense, FP8 1978.9 T dense).
- L4: NVIDIA L4 datasheet, https://resources.nvidia.com/en-us-data-center-overview/l4-gpu-datasheet
  (FP32 30.3 T, TF32 60 T, BF16/FP16 121 T, FP8 242.5 T; dense = half the printed sparse figures).
- A10G (AWS g5): AWS publishes no FLOP figures; the A10 datasheet's
  https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a10/pdf/a10-datasheet.pdf
  (FP32 31.2 T, TF32 62.5 T, BF16/FP16 125 T) is the usual stand-in, as in PyTorch Lightning's table.
"""

from __future__ import annotations

from collections.abc import Mapping

from gpulens.errors import GpulensError

Precision = str  # "fp32", "tf32", "bf16", "fp16", "fp8"

TERA = 1e12

PEAK_FLOPS: Mapping[str, Mapping[Precision, float]] = {
    "a100": {"fp32": 19.5 * TERA, "tf32": 156 * TERA, "bf16": 312 * TERA, "fp16": 312 * TERA},
    "h100-sxm": {
        "fp32": 66.9 * TERA,
        "tf32": 494.7 * TERA,
        "bf16": 989.4 * TERA,
        "fp16": 989.4 * TERA,
        "fp8": 1978.9 * TERA,
    },
    "h100-pcie": {
        "fp32": 51.2 * TERA,
        "tf32": 378 * TERA,
        "bf16": 756.5 * TERA,
        "fp16": 756.5 * TERA,
        "fp8": 1513 * TERA,
    },
    "h200": {
        "fp32": 66.9 * TERA,
        "tf32": 494.7 * TERA,
        "bf16": 989.4 * TERA,
        "fp16": 989.4 * TERA,
        "fp8": 1978.9 * TERA,
    },
    "l4": {
        "fp32": 30.3 * TERA,
        "tf32": 60 * TERA,
        "bf16": 121 * TERA,
        "fp16": 121 * TERA,
        "fp8": 242.5 * TERA,
    },
    "a10g": {"fp32": 31.2 * TERA, "tf32": 62.5 * TERA, "bf16": 125 * TERA, "fp16": 125 * TERA},
}

# Substrings of CUDA device names (torch.cuda.get_device_name / nvidia-smi) -> table key; first match wins.
_NAME_PATTERNS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("h200",), "h200"),
    (("h100", "pcie"), "h100-pcie"),
    (("h100",), "h100-sxm"),  # "NVIDIA H100 80GB HBM3" is the SXM part
    (("a100",), "a100"),
    (("a10g",), "a10g"),
    (("l4",), "l4"),
)


def gpu_model_key(device_name: str) -> str | None:
    """The table key for a CUDA device name such as ``NVIDIA H100 80GB HBM3``, or None if unknown."""
    name = device_name.lower()
    for parts, key in _NAME_PATTERNS:
        if all(p in name for p in parts):
            if key == "l4" and "l40" in name:  # L40/L40S are other parts
                return None
            return key
    return None


def peak_flops(model: str, precision: Precision = "bf16") -> float:
    """Dense peak FLOP/s of one GPU; `model` is a table key or a device name. Raises GpulensError if
    unknown."""
    key = model if model in PEAK_FLOPS else gpu_model_key(model)
    if key is None:
        raise GpulensError(
            f"no peak FLOPs for GPU {model!r}; pass peak_flops= (FLOP/s) explicitly", field="peak_flops"
        )
    table = PEAK_FLOPS[key]
    if precision not in table:
        raise GpulensError(f"{key} has no {precision} peak; one of {', '.join(table)}", field="precision")
    return table[precision]


def mfu(flops_per_token: float, tokens: float, seconds: float, peak: float, gpus: int = 1) -> float | None:
    """Model FLOPs utilization (0..1) of one interval; None when it cannot be computed."""
    if seconds <= 0 or peak <= 0 or gpus <= 0 or flops_per_token <= 0:
        return None
    return flops_per_token * tokens / seconds / (peak * gpus)


def decoder_params(
    n_layers: int,
    d_model: int,
    vocab_size: int,
    ffn_mult: float = 4.0,
    seq_len: int = 0,
    tied_embeddings: bool = True,
) -> int:
    """Parameters of a GPT-style decoder: per layer 4d² (attention) + 2·ffn_mult·d² (MLP), plus embeddings.

    Biases and LayerNorm gains (O(d) per layer) are left out, as in Kaplan et al. 2020 §2.1.
    `seq_len` > 0 adds a learned position table.
    """
    per_layer = int(4 * d_model * d_model + 2 * ffn_mult * d_model * d_model)
    embeddings = vocab_size * d_model * (1 if tied_embeddings else 2) + seq_len * d_model
    return n_layers * per_layer + embeddings


def transformer_flops_per_token(n_params: int, n_layers: int, d_model: int, seq_len: int) -> float:
    """Training FLOPs per token of a decoder-only transformer: 6N + 12·L·d·T.

    6N counts the forward (2N) and backward (4N) matmuls with the weights; 12·L·d·T the attention
    scores and their use over a context of T tokens (PaLM, Chowdhery et al. 2022, Appendix B: 6N + 12LHQT
    with H·Q = d; the same terms as Megatron-LM, Narayanan et al. 2021, §5.1, eq. 3, divided per token
    and without its vocabulary term, which N already holds when embeddings are tied).
    """
    return 6.0 * n_params + 12.0 * n_layers * d_model * seq_len
