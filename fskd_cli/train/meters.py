"""Running sums of named per-step values between two log rows, kept on the device."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class Meters:
    """Sums by name since the last log row, in one device tensor (the last slot counts the steps).

    :meth:`add` queues a device addition and never waits for the GPU; only :meth:`means` reads the sums
    back, at log and checkpoint steps. The sums go into every checkpoint, so a resumed run writes the same
    log rows as one never interrupted.
    """

    def __init__(self, names: Sequence[str], device: torch.device | str = "cpu") -> None:
        self.names = tuple(names)
        self.sums = torch.zeros(len(self.names) + 1, device=device)

    def add(self, **values: torch.Tensor) -> None:
        """Add one step's value of every meter (0-d device tensors)."""
        self.sums += torch.stack([*(values[n].float() for n in self.names), self.sums.new_ones(())])

    def means(self) -> dict[str, float]:
        """The mean of every meter since the last :meth:`reset` (one read from the device)."""
        return dict(zip(self.names, (self.sums[:-1] / self.sums[-1]).tolist(), strict=True))

    @property
    def count(self) -> int:
        """Steps added since the last :meth:`reset` (one read from the device)."""
        return int(self.sums[-1].item())

    def reset(self) -> None:
        self.sums.zero_()

    def state_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "sums": self.sums.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["names"]) != self.names:
            raise ValueError(f"meters {state['names']} cannot be loaded into {list(self.names)}")
        self.sums.copy_(state["sums"])
