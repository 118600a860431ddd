"""Hold out identities of a prepared training set for 1:1 verification on unseen people.

Small face sets (ORL, Yale, your own) have no separate benchmark: ``fskd prepare holdout`` moves the
images of ``n`` identities, chosen with a seed, to the ``test`` split and writes a ``pairs.csv`` among
them in the LFW layout (10 folds, each half same-identity pairs, half different). Labels are renumbered
so the training identities are ``0 .. K-1`` (a classifier head needs no unused classes) and the held-out
ones follow. The manifest and meta.yaml are rewritten atomically; images are not touched.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from pathlib import Path

from ..core.errors import FskdError
from ..core.io import write_csv, write_yaml
from .manifest import MANIFEST_FIELDS, PAIR_FIELDS, Row, read_manifest, read_meta


def make_pairs(rows: list[Row], n_pairs: int, folds: int, seed: int) -> list[tuple[str, str, int]]:
    """``n_pairs`` distinct pairs in ``folds`` consecutive folds, each half same, half different."""
    if n_pairs % (2 * folds):
        raise FskdError(f"--pairs {n_pairs} must be a multiple of {2 * folds} (half same, half different, {folds} folds)")
    by_id: dict[int, list[str]] = {}
    for r in rows:
        by_id.setdefault(r.label, []).append(r.path)
    same = [p for paths in by_id.values() for p in itertools.combinations(sorted(paths), 2)]
    ids = sorted(by_id)
    diff = [(a, b) for i, j in itertools.combinations(ids, 2) for a in by_id[i] for b in by_id[j]]
    half = n_pairs // 2
    if len(same) < half or len(diff) < half:
        raise FskdError(f"the held-out identities give {len(same)} same and {len(diff)} different pairs; "
                        f"--pairs {n_pairs} needs {half} of each")
    rng = random.Random(seed)
    same, diff = rng.sample(same, half), rng.sample(diff, half)
    per = half // folds
    out: list[tuple[str, str, int]] = []
    for k in range(folds):
        out += [(a, b, 1) for a, b in same[k * per:(k + 1) * per]]
        out += [(a, b, 0) for a, b in diff[k * per:(k + 1) * per]]
    return out


def hold_out(root: str | Path, identities: int, pairs: int, *, folds: int = 10, seed: int = 0) -> dict:
    """Move ``identities`` identities of ``root`` to the test split and write their pairs; return the meta."""
    root = Path(root)
    meta = read_meta(root)
    all_rows = read_manifest(root, ok_only=False)
    ok = [r for r in all_rows if r.status == "ok" and r.label >= 0]
    labels = sorted({r.label for r in ok})
    if not 2 <= identities < len(labels):
        raise FskdError(f"{root}: has {len(labels)} identities; --identities must be from 2 to {len(labels) - 1}")
    held = set(random.Random(seed).sample(labels, identities))
    kept = [lab for lab in labels if lab not in held]
    new_label = {lab: i for i, lab in enumerate(kept + sorted(held))}
    rows = [replace(r, label=new_label.get(r.label, r.label),
                    split=("test" if r.label in held else "train") if r.status == "ok" else r.split) for r in all_rows]
    pair_list = make_pairs([r for r in rows if r.split == "test" and r.status == "ok"], pairs, folds, seed)
    write_csv(root / "pairs.csv", (dict(zip(PAIR_FIELDS, p)) for p in pair_list), PAIR_FIELDS)
    write_csv(root / "manifest.csv", (r.__dict__ for r in rows), MANIFEST_FIELDS)
    counts = dict(meta.get("counts", {}))
    counts["splits"] = {s: sum(r.split == s and r.status == "ok" for r in rows) for s in ("train", "test")}
    counts["pairs"] = len(pair_list)
    meta.update(counts=counts, num_classes=len(kept),
                holdout={"identities": identities, "pairs": pairs, "folds": folds, "seed": seed,
                         "train_identities": len(kept)})
    write_yaml(root / "meta.yaml", meta)
    return meta
