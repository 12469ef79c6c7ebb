"""Where models run and in which precision.

`TINYRAG_DEVICE=auto` picks CUDA, then Apple's MPS, then the CPU. Weights are bf16 where the
hardware computes bf16 natively (bf16 CUDA GPUs; CPUs with AVX512-BF16, AMX or Arm BF16), fp32
elsewhere or when `TINYRAG_FORCE_FP32` is set. fp16 is never chosen on a CPU: most CPUs have no
fp16 matmul and it runs far slower than fp32 there (measured: ~10x slower prefill).

Also here: how many CPU threads torch may use in this process (`configure_cpu_threads`).
"""

from __future__ import annotations

import functools
import math
import os
import platform
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import torch

from search.ml.errors import DeviceError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class Precision(StrEnum):
    BF16 = "bf16"
    FP32 = "fp32"

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self is Precision.BF16 else torch.float32


@dataclass(frozen=True)
class ComputeTarget:
    """A resolved device and the precision models run in there; hashable, for registry keys."""

    device: str  # "cpu", "cuda", "cuda:1", "mps"
    precision: Precision

    @property
    def dtype(self) -> torch.dtype:
        return self.precision.dtype


def resolve_device(requested: str = "auto") -> str:
    """The torch device for a TINYRAG_DEVICE value; DeviceError if absent or unknown."""
    value = (requested or "auto").strip().lower()
    kind = value.split(":", 1)[0]
    if kind not in DEVICE_CHOICES or (":" in value and kind != "cuda"):
        raise DeviceError(
            f"TINYRAG_DEVICE={requested!r} is not one of {', '.join(DEVICE_CHOICES)} (or cuda:N)."
        )
    if kind == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available():
            return "mps"
        return "cpu"
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"TINYRAG_DEVICE={requested!r} but torch sees no CUDA GPU here.")
    if kind == "mps" and not _mps_available():
        raise DeviceError(f"TINYRAG_DEVICE={requested!r} but torch's MPS backend is unavailable.")
    return value


def choose_precision(device: str, *, force_fp32: bool = False) -> Precision:
    """bf16 where this device computes it natively, else fp32 (never fp16)."""
    if force_fp32:
        return Precision.FP32
    kind = device.split(":", 1)[0]
    if kind == "cuda":
        # Ampere and later; older GPUs emulate bf16 slowly, so they stay in fp32.
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return Precision.BF16 if native else Precision.FP32
    if kind == "cpu":
        return Precision.BF16 if cpu_has_native_bf16() else Precision.FP32
    # MPS: bf16 kernels exist only on recent macOS and are not faster than fp32 for CLIP.
    return Precision.FP32


def compute_target(requested_device: str = "auto", *, force_fp32: bool = False) -> ComputeTarget:
    device = resolve_device(requested_device)
    return ComputeTarget(device=device, precision=choose_precision(device, force_fp32=force_fp32))


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions, which is what makes bf16 faster.

    x86: AVX512-BF16 or AMX, as detected by torch's cpuinfo (torch.cpu private helpers, present
    since torch 2.1), falling back to the /proc/cpuinfo flags. oneDNN's own "bf16 supported"
    check is not used: it is also true on plain AVX-512 CPUs that only emulate bf16 (slower
    than fp32). Arm: the BF16 extension (Graviton 3+, Apple M2+), via oneDNN's check, which
    there does test that extension, or /proc/cpuinfo's "bf16" feature.
    """
    machine = platform.machine().lower()
    if machine in {"x86_64", "amd64", "i686"}:
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        found = [getattr(torch.cpu, name, None) for name in probes]
        if all(probe is not None for probe in found):
            return any(probe() for probe in found)
        return bool(_cpuinfo_flags() & {"avx512_bf16", "amx_bf16"})
    if machine in {"aarch64", "arm64"}:
        if "bf16" in _cpuinfo_flags():
            return True
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def _cpuinfo_flags() -> set[str]:
    """The CPU feature flags Linux reports (x86 "flags", Arm "Features"); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"flags", "Features"}:
            return set(value.split())
    return set()


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


_threads_lock = threading.Lock()
_threads_configured = False


def configure_cpu_threads(*, processes: int = 1) -> int:
    """Cap torch's intra-op threads at this process's share of the CPUs it may really use;
    return the count. The first call in a process decides.

    torch starts one thread per physical core of the host, even in a container limited by
    cgroup quota or CPU affinity; more threads than usable CPUs makes every matmul wait on
    preempted threads. `processes` is how many processes share those CPUs (gunicorn's
    workers: deploy/gunicorn.conf.py), each getting an equal share, at least one thread: two
    workers of two threads each on two cores, each worker also embedding texts and images in
    two threads at once, spend 25% more CPU per query than with one thread each (measured:
    CLIP ViT-B/32 bf16, batches of 2, 66 vs 85 core-ms per image, 25 vs 33 per text).
    An operator's OMP_NUM_THREADS / earlier torch.set_num_threads wins.
    (DataLoader workers already run with one torch thread each.)
    """
    global _threads_configured
    with _threads_lock:
        if not _threads_configured and not os.environ.get("OMP_NUM_THREADS"):
            usable = max(1, usable_cpu_count() // max(1, processes))
            if torch.get_num_threads() > usable:
                torch.set_num_threads(usable)
        _threads_configured = True
        return torch.get_num_threads()


def usable_cpu_count() -> int:
    """CPUs this process may run on: affinity mask, then the cgroup v2 CPU quota."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = count or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count
