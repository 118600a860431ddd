"""Which device a stage runs on: ``auto`` (the default of every stage) is CUDA when there is one.

One resolver, so ``fskd eval``, ``fskd analyze`` and training agree: a GPU owner's AgeDB eval never
silently runs on the CPU, and asking for a GPU that is not there is one line, not a CUDA traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import FskdError

if TYPE_CHECKING:  # torch loads when a device is resolved, not when the CLI lists DEVICE_HELP
    import torch

DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N."


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else is checked to exist here."""
    import torch

    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FskdError(f"--device: unknown device {name!r} (use {DEVICE_HELP})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FskdError(f"--device {name}: no CUDA device is available on this machine (use --device auto or cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise FskdError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise FskdError(f"--device: {name!r} is not supported (use {DEVICE_HELP})")
    return device
