"""Device and numeric-precision choices, made once per loaded model."""

from __future__ import annotations

import torch

from healthmon.errors import ConfigError


def pick_device(preference: str = "auto") -> torch.device:
    """Return the device to run on.

    Args:
        preference: ``auto`` (cuda, then mps, then cpu) or an explicit ``cpu``/``cuda``/``mps``.

    Returns:
        A ``torch.device``. An explicit device that is not available raises ConfigError
        rather than silently falling back, so a clinician's GPU setting is never ignored.
    """
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "a CUDA GPU (HEALTHMON_DEVICE=cuda)",
            "no CUDA device visible to torch",
            "set HEALTHMON_DEVICE=auto or cpu, or install a CUDA build of torch",
        )
    if preference == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            "an Apple MPS device (HEALTHMON_DEVICE=mps)",
            "MPS not available",
            "set HEALTHMON_DEVICE=auto or cpu",
        )
    if preference not in {"cpu", "cuda", "mps"}:
        raise ConfigError("one of auto, cpu, cuda, mps", repr(preference), "fix HEALTHMON_DEVICE")
    return torch.device(preference)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast is a real speed-up here (native bf16 units), not an emulation."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # Without AVX512-BF16 or AMX the CPU emulates bf16 and is slower than fp32.
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


BF16_MAX_DRIFT = 0.01
BF16_MIN_AGREEMENT = 0.995


def bf16_check_passed(check: dict | None) -> bool:
    """Whether a version's recorded bf16-vs-fp32 comparison meets the bars for ``auto``."""
    return bool(check) and check.get("max_drift", 1.0) <= BF16_MAX_DRIFT and check.get("agreement", 0.0) >= BF16_MIN_AGREEMENT


def resolve_precision(requested: str, device: torch.device, bf16_check: dict | None = None) -> str:
    """Map the ``precision`` setting to what will actually run: fp32, bf16 or int8.

    ``auto`` picks bf16 only where :func:`bf16_is_fast` says so *and* the version's own
    test split showed bf16 probabilities within 0.01 of fp32 with 99.5% top-label
    agreement (recorded in its card at training time). bf16 drift depends on the model:
    2x faster is no use if a clinician's score moves. int8 is CPU-only and opt-in because
    dynamic activation scales make a note's scores depend on its batch-mates.
    """
    if requested == "auto":
        return "bf16" if bf16_is_fast(device) and bf16_check_passed(bf16_check) else "fp32"
    if requested == "int8" and device.type != "cpu":
        raise ConfigError(
            "int8 precision on a CPU device",
            f"int8 requested on {device.type}",
            "use precision=bf16 or fp32 on GPUs, or set HEALTHMON_DEVICE=cpu",
        )
    if requested == "bf16" and not bf16_is_fast(device):
        raise ConfigError(
            "a device with native bf16 (AVX512-BF16/AMX CPU or a recent GPU)",
            f"{device.type} without fast bf16",
            "use precision=auto or fp32",
        )
    if requested not in {"fp32", "bf16", "int8"}:
        raise ConfigError("one of auto, fp32, bf16, int8", repr(requested), "fix HEALTHMON_PRECISION")
    return requested
