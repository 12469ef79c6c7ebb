"""int8 weight-only decoding for the Qwen2-VL text model on CPUs (the transformers backend).

Decoding one token reads every weight of the text model once, so its speed is memory bandwidth:
int8 copies of the weights halve the bytes of bf16 (benchmarks/generate_speed.py measures it).
"""

from __future__ import annotations

from typing import Any

import torch

# At most this many rows (tokens) per matmul take the int8 kernel: measured on a 2-core AMX
# CPU, int8 x bf16 beats bf16 x bf16 for 1-2 rows (2.6x at 1) and loses from ~8 (prefill).
INT8_DECODE_MAX_ROWS = 4
QUANTIZE_BLOCK_ROWS = 4096  # rows quantized at a time, to bound the transient fp32 copy


def int8_decode_supported() -> bool:
    """Whether this torch has the CPU int8 weight-only matmul kernel (aten, since 2.2)."""
    return hasattr(torch, "_weight_int8pack_mm")


def quantize_decoder_int8(model: Any, *, keep_dense: bool = True) -> int:
    """Give every Linear of the text model (and lm_head) int8 per-output-channel weights for
    decoding; return how many layers were converted.

    Decoding one token is a matrix-vector product per layer, bound by reading the weights:
    int8 halves the bytes of bf16. Prefill (many rows) stays on the dense bf16 weights when
    `keep_dense` (+1 byte per parameter of memory), else dequantizes them on the fly (slower
    prefill, less memory). The vision tower is untouched: it runs once per request.
    """
    language_model = model.model.language_model
    targets = [
        (parent, name, child)
        for parent in [*language_model.modules(), model]
        for name, child in parent.named_children()
        if isinstance(child, torch.nn.Linear) and (parent is not model or name == "lm_head")
    ]
    for parent, name, linear in targets:
        setattr(parent, name, Int8DecodeLinear.from_linear(linear, keep_dense=keep_dense))
    return len(targets)


class Int8DecodeLinear(torch.nn.Module):
    """A Linear computing few-row products (decoding) with int8 weights x per-channel scales.

    Symmetric per-output-channel int8 (weight-only: activations stay bf16/fp32), the scheme
    of torchao's int8_weight_only and gpt-fast; many-row products (prefill) use the dense
    weight, kept or dequantized.
    """

    def __init__(
        self,
        qweight: torch.Tensor,
        scales: torch.Tensor,
        bias: torch.Tensor | None,
        dense: torch.Tensor | None,
    ) -> None:
        super().__init__()
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales", scales)
        self.bias = bias
        self.dense = dense  # the original weight (shared, not copied), or None
        self.out_features, self.in_features = qweight.shape
        self.max_rows = INT8_DECODE_MAX_ROWS  # 0 turns int8 off (benchmarks compare both)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, *, keep_dense: bool) -> Int8DecodeLinear:
        weight = linear.weight.detach()
        qweight = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
        scales = torch.empty(weight.shape[0], dtype=torch.float32, device=weight.device)
        # In row blocks: an fp32 copy of lm_head at once would be ~1 GB of transient memory.
        for start in range(0, weight.shape[0], QUANTIZE_BLOCK_ROWS):
            block = weight[start : start + QUANTIZE_BLOCK_ROWS].float()
            block_scales = block.abs().amax(dim=1).clamp(min=1e-8) / 127.0
            quantized = torch.round(block / block_scales[:, None]).clamp(-127, 127)
            qweight[start : start + len(block)] = quantized
            scales[start : start + len(block)] = block_scales
        return cls(qweight, scales.to(weight.dtype), linear.bias, weight if keep_dense else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if rows <= self.max_rows:
            flat = x.reshape(rows, self.in_features)
            out = torch._weight_int8pack_mm(flat, self.qweight, self.scales.to(x.dtype))
            out = out.reshape(*x.shape[:-1], self.out_features)
            return out if self.bias is None else out + self.bias
        weight = self.dense
        if weight is None:
            weight = self.qweight.to(x.dtype) * self.scales.to(x.dtype)[:, None]
        return torch.nn.functional.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        kept = "kept" if self.dense is not None else "dropped"
        return f"in_features={self.in_features}, out_features={self.out_features}, dense={kept}"
