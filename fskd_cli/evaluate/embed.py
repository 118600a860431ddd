"""Run a trained backbone over a prepared dataset: embeddings, and optionally the tapped block features."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from rich.progress import Progress
from torch import nn

from ..data.dataset import PairDataset, eval_batches, to_input
from ..models.tap import FeatureTap


@torch.inference_mode()
def embed(model: nn.Module, ds: PairDataset, scale: int, *, batch_size: int = 256, device: str | torch.device = "cpu",
          flip: bool = False, features: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None,
          label: str = "embedding") -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Embeddings ``[N, D]`` of every image of ``ds`` at ``scale`` (mirrored when ``flip``).

    With ``features``, the tapped block outputs of each batch are passed through it (to reduce them, e.g.
    to per-image norms) and returned concatenated per block; the full maps are never all kept in memory.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    tap = FeatureTap(model, model.feature_layers) if features is not None else None
    embs: list[torch.Tensor] = []
    feats: list[list[torch.Tensor]] = []
    try:
        with Progress(transient=True) as progress:
            task = progress.add_task(f"{label} x{scale}", total=len(ds))
            for keys in eval_batches(len(ds), batch_size, scale, flip):
                _, lr, _, _ = ds.__getitems__(keys)
                embs.append(model(to_input(lr, device)).float().cpu())
                if tap is not None:
                    feats.append([f.cpu() for f in features(tap.features)])
                progress.advance(task, len(keys))
    finally:
        if tap is not None:
            tap.remove()
    blocks = [torch.cat(b) for b in zip(*feats)] if feats else []
    return torch.cat(embs), blocks


def dataset_for(root: str, split: str | None, scales: Sequence[int], cache: bool = False) -> PairDataset:
    """The images of one split (all usable rows when ``split`` is None) at the given scales."""
    from ..data.manifest import read_manifest

    rows = read_manifest(root, split=split)
    return PairDataset(root, split or "", scales, cache=cache, rows=rows)
