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
from dataclasses import asdict, replace
from pathlib import Path

from ..core.errors import FskdError
from ..core.guard import first_difference
from ..core.io import write_csv, write_yaml
from .manifest import MANIFEST_FIELDS, PAIR_FIELDS, USABLE, Row, read_manifest, read_meta
from .readers.reader import natural_key


def make_pairs(rows: list[Row], n_pairs: int, folds: int, seed: int) -> list[tuple[str, str, int]]:
    """``n_pairs`` distinct pairs in ``folds`` consecutive folds, each half same, half different."""
    if n_pairs <= 0 or n_pairs % (2 * folds):  # no pairs would make a 1:1 test set nothing can be evaluated on
        raise FskdError(f"--pairs {n_pairs}: must be a positive multiple of {2 * folds} (half same, half different, "
                        f"{folds} folds)")
    by_id: dict[int, list[str]] = {}
    for r in rows:
        by_id.setdefault(r.label, []).append(r.path)
    same = [p for paths in by_id.values() for p in itertools.combinations(sorted(paths), 2)]
    ids = sorted(by_id)
    diff = [(a, b) for i, j in itertools.combinations(ids, 2) for a in by_id[i] for b in by_id[j]]
    half = n_pairs // 2
    if len(same) < half or len(diff) < half:
        raise FskdError(f"--pairs {n_pairs}: needs {half} same and {half} different pairs; the held-out identities "
                        f"give {len(same)} and {len(diff)} (hold out more identities, or ask for fewer pairs)")
    rng = random.Random(seed)
    same, diff = rng.sample(same, half), rng.sample(diff, half)
    per = half // folds
    out: list[tuple[str, str, int]] = []
    for k in range(folds):
        out += [(a, b, 1) for a, b in same[k * per:(k + 1) * per]]
        out += [(a, b, 0) for a, b in diff[k * per:(k + 1) * per]]
    return out


def hold_out(root: str | Path, identities: int, pairs: int, *, folds: int = 10, seed: int = 0,
             force: bool = False) -> dict:
    """Move ``identities`` identities of ``root`` to the test split and write their pairs; return the meta.

    The choice depends only on the identity names, ``identities`` and ``seed``, never on an earlier
    holdout: a rerun with the same options changes nothing, one with other options is refused unless
    ``force``, which redoes the split from all identities (no held-out person is moved into training
    by accident, and none is held out twice).
    """
    root = Path(root)
    meta = read_meta(root)
    if meta["task"] != "train":
        raise FskdError(f"{root}: a {meta['task']} set; `prepare holdout` splits a training set")
    asked = {"identities": identities, "pairs": pairs, "folds": folds, "seed": seed}
    if _already_done(root, meta.get("holdout"), asked, force):
        return meta
    rows, kept = _split(root, read_manifest(root, ok_only=False), identities, seed)
    pair_list = make_pairs([r for r in rows if r.split == "test" and r.status in USABLE], pairs, folds, seed)
    write_csv(root / "pairs.csv", (dict(zip(PAIR_FIELDS, p, strict=True)) for p in pair_list), PAIR_FIELDS)
    write_csv(root / "manifest.csv", (asdict(r) for r in rows), MANIFEST_FIELDS)
    counts = dict(meta.get("counts", {}))
    counts["splits"] = {s: sum(r.split == s and r.status in USABLE for r in rows) for s in ("train", "test")}
    counts["pairs"] = len(pair_list)
    meta.update(counts=counts, num_classes=kept, holdout={**asked, "train_identities": kept})
    write_yaml(root / "meta.yaml", meta)
    return meta


def _already_done(root: Path, done: dict | None, asked: dict, force: bool) -> bool:
    """Whether the same holdout is already there; a different one is refused unless ``force``."""
    if done is None:
        return False
    diff = first_difference({k: done.get(k) for k in asked}, asked)
    if diff is None:
        return True
    if not force:
        key, old, new = diff
        raise FskdError(f"{root}: already holds out identities with --{key} {old}, now --{key} {new}; rerun with the "
                        "same options, or --force to redo the split from all identities")
    return False


def _split(root: Path, all_rows: list[Row], identities: int, seed: int) -> tuple[list[Row], int]:
    """All rows with held-out identities in ``test``, the others in ``train``, and labels renumbered:
    training identities ``0 .. K-1`` then the held-out ones, each in natural order of their names."""
    names = sorted({r.identity for r in all_rows if r.status in USABLE and r.identity and r.label >= 0},
                   key=natural_key)
    if not 2 <= identities < len(names):
        raise FskdError(f"{root}: has {len(names)} identities; --identities must be from 2 to {len(names) - 1}")
    held = set(random.Random(seed).sample(names, identities))
    order = [n for n in names if n not in held] + [n for n in names if n in held]
    new_label = {name: i for i, name in enumerate(order)}
    rows = [replace(r, label=new_label.get(r.identity, r.label),
                    split=("test" if r.identity in held else "train") if r.status in USABLE else r.split)
            for r in all_rows]
    return rows, len(names) - identities
