"""What the CPU can do fast: bfloat16 only where it has native bf16 instructions.

On a CPU with AVX512-BF16 or AMX, bfloat16 matmuls (and autocast) run about 2x faster than float32. On a CPU without
them (AVX2-only, e.g. many AMD EPYC cloud machines) PyTorch emulates bf16 and it is far slower: measured here, a
1024 x 1024 matmul ran at 86 GFLOPS in float32 and 0.9 GFLOPS in bfloat16 on one AVX2 core, and the warm start's SFT
under bf16 autocast made 5 optimizer steps in 20 minutes. So every "bf16 on CPU because it is faster" default in this
project goes through :func:`effective_dtype`, which keeps float32 where bf16 would be emulated.

``IGPO_ENV_CPU_BF16=1`` (or ``0``) overrides the detection.

Example:
    >>> effective_dtype("float32")
    'float32'
    >>> effective_dtype("bfloat16") in ("bfloat16", "float32")
    True
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

__all__ = ["CPU_BF16_ENV", "CPUINFO", "BF16_CPU_FLAGS", "cpu_has_native_bf16", "effective_dtype"]

CPU_BF16_ENV = "IGPO_ENV_CPU_BF16"
"""Environment variable that overrides the native-bf16 detection: ``1`` (use bf16 on CPU) or ``0`` (never)."""

CPUINFO = "/proc/cpuinfo"
"""Where the CPU flags are read (Linux)."""

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
"""``/proc/cpuinfo`` flags of x86 CPUs with native bfloat16 arithmetic."""

logger = logging.getLogger(__name__)


@functools.cache
def _cpuinfo_flags(path: str) -> frozenset[str]:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), i.e. whether bf16 is faster than float32.

    Read from the flags in ``cpuinfo`` (default :data:`CPUINFO`; no such file, as off Linux: ``False``), unless
    ``IGPO_ENV_CPU_BF16`` is ``1`` or ``0``.

    Raises:
        ValueError: for an ``IGPO_ENV_CPU_BF16`` other than ``0`` or ``1``.

    Example:
        >>> import os
        >>> os.environ["IGPO_ENV_CPU_BF16"] = "0"
        >>> cpu_has_native_bf16()
        False
        >>> del os.environ["IGPO_ENV_CPU_BF16"]
    """
    forced = os.environ.get(CPU_BF16_ENV)
    if forced is not None:
        if forced not in ("0", "1"):
            raise ValueError(f"{CPU_BF16_ENV} must be '0' or '1', got {forced!r}; unset it to detect")
        return forced == "1"
    return any(flag in _cpuinfo_flags(cpuinfo or CPUINFO) for flag in BF16_CPU_FLAGS)


def effective_dtype(dtype: str, device: str = "cpu") -> str:
    """Return ``dtype``, except ``"float32"`` for ``"bfloat16"`` on a CPU without native bf16 (where it is emulated).

    Args:
        dtype: A dtype name (``"bfloat16"``, ``"float32"``, ...). Names other than ``"bfloat16"`` come back as given.
        device: ``"cpu"``, a CUDA device or ``"auto"`` (CUDA when torch sees a GPU); only the CPU is downgraded.

    Example:
        >>> effective_dtype("bfloat16", device="cuda")
        'bfloat16'
    """
    if dtype != "bfloat16" or cpu_has_native_bf16():
        return dtype
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not str(device).startswith("cpu"):
        return dtype
    logger.warning(
        "this CPU has no native bf16 (%s): bfloat16 would be emulated, many times slower; using float32 "
        "(set %s=1 to force bf16)",
        "/".join(BF16_CPU_FLAGS),
        CPU_BF16_ENV,
    )
    return "float32"
