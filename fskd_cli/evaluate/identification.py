"""1:N identification: rank-k identification rate (CMC) and mean average precision (mAP).

The protocol is TinyFace's closed-set search: each probe is compared with a gallery that holds the
gallery images of the probe identities plus distractors (label ``-1``) that match no probe.
Similarity is the cosine of L2-normalised embeddings.

Decisions that change the numbers, fixed here so every run makes them the same way:

- A probe with no gallery image of its identity is excluded from both CMC and mAP and counted in
  ``probes_without_match``. In a closed-set protocol every probe has a mate, so such a probe means
  the gallery lost images (e.g. failed alignment); scoring it as a miss would hide that data problem
  inside a lower rank-1, while the count shows it.
- Ties are broken against the probe: a gallery item's rank is the number of items with similarity
  >= its own. Ties can then never raise a score, and the result does not depend on gallery order.
- Only the ranks of the relevant gallery items are computed (one comparison pass per item), and
  similarities are computed for a chunk of probes at a time, so TinyFace-size sets (8k probes x
  160k gallery) need neither a full P x G matrix nor a sort of every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vectors import l2_normalise

DISTRACTOR = -1
REPORTED_RANKS = (1, 5, 10, 20)
# Similarity entries held at once: 2**24 float32 values are 64 MiB.
_CHUNK_ELEMENTS = 2**24


@dataclass
class IdentificationResult:
    """CMC, the usual rank-k rates and mAP over the ``n_probes`` probes that have a gallery mate."""

    cmc: np.ndarray
    ranks: dict[int, float]
    mean_ap: float
    n_probes: int
    probes_without_match: int


def identification_accuracy(
    probe: np.ndarray,
    probe_labels: np.ndarray,
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    max_rank: int = 20,
    probes_per_chunk: int | None = None,
) -> IdentificationResult:
    """Search every probe ``[P, D]`` in the gallery ``[G, D]``; ``cmc[k - 1]`` is the rank-k rate.

    ``probes_per_chunk`` bounds memory (default: as many probes as fit in 2**24 similarities).
    Raises ``ValueError`` for mismatched shapes or when no probe has a gallery mate.
    """
    probe_labels, gallery_labels = np.asarray(probe_labels), np.asarray(gallery_labels)
    probe, gallery = _check_inputs(probe, probe_labels, gallery, gallery_labels, max_rank)
    chunk = probes_per_chunk or max(1, _CHUNK_ELEMENTS // len(gallery))
    mates = _gallery_index_by_label(gallery_labels)

    first_ranks, average_precisions, without_match = [], [], 0
    for start in range(0, len(probe), chunk):
        similarities = probe[start : start + chunk] @ gallery.T
        for row, label in zip(similarities, probe_labels[start : start + chunk], strict=True):
            relevant = mates.get(int(label))
            if relevant is None:
                without_match += 1
                continue
            first_rank, average_precision = _rank_relevant(row, relevant)
            first_ranks.append(first_rank)
            average_precisions.append(average_precision)
    if not first_ranks:
        raise ValueError("no probe has a gallery image of its identity")

    cmc = (np.array(first_ranks)[:, None] <= np.arange(1, max_rank + 1)[None, :]).mean(axis=0)
    return IdentificationResult(
        cmc=cmc,
        ranks={k: float(cmc[k - 1]) for k in REPORTED_RANKS if k <= max_rank},
        mean_ap=float(np.mean(average_precisions)),
        n_probes=len(first_ranks),
        probes_without_match=without_match,
    )


def _check_inputs(
    probe: np.ndarray,
    probe_labels: np.ndarray,
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    max_rank: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Probe and gallery L2-normalised in a common float dtype (float32 stays float32 to save memory)."""
    dtype = np.result_type(np.asarray(probe).dtype, np.asarray(gallery).dtype, np.float32)
    probe, gallery = np.asarray(probe, dtype=dtype), np.asarray(gallery, dtype=dtype)
    if probe.ndim != 2 or gallery.ndim != 2 or probe.shape[1] != gallery.shape[1]:
        raise ValueError(f"probe and gallery must be [P, D] and [G, D], got {probe.shape}, {gallery.shape}")
    if probe_labels.shape != (len(probe),) or gallery_labels.shape != (len(gallery),):
        raise ValueError("need one label per probe and per gallery image")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    return l2_normalise(probe), l2_normalise(gallery)


def _gallery_index_by_label(gallery_labels: np.ndarray) -> dict[int, np.ndarray]:
    """Gallery indices of each identity; distractors get no entry, so they can never be a mate."""
    order = np.argsort(gallery_labels, kind="stable")
    labels, starts = np.unique(gallery_labels[order], return_index=True)
    groups = np.split(order, starts[1:])
    return {int(label): idx for label, idx in zip(labels, groups, strict=True) if label != DISTRACTOR}


def _rank_relevant(similarity: np.ndarray, relevant: np.ndarray) -> tuple[int, float]:
    """Rank of the first mate, and average precision over the whole ranked gallery.

    rank(item) = #gallery items with similarity >= the item's; precision at a mate = #mates with
    similarity >= its own / its rank; AP = mean precision over the mates.
    """
    mate_similarity = similarity[relevant]
    ranks = (similarity[None, :] >= mate_similarity[:, None]).sum(axis=1)
    mates_at_or_above = (mate_similarity[None, :] >= mate_similarity[:, None]).sum(axis=1)
    return int(ranks.min()), float(np.mean(mates_at_or_above / ranks))
