"""The ``fskd eval`` stage: a checkpoint and a prepared dataset in; the eval JSON, a figure and one
``results.csv`` row per metric out.

Three kinds of benchmark, each a function here (the CLI only parses options and calls
:func:`evaluate_benchmark`):

- 1:1 verification (:func:`verification_stage`): any set with a ``pairs.csv`` (AgeDB-30, LFW, CFP-FP),
  10-fold accuracy under the ``insightface`` or ``authors`` protocol, TAR at FAR 1e-3 / 1e-4, ROC AUC
  and a ROC PNG. At scale ``s`` both images of a pair are ``s``x LR copies (the paper's protocol), or,
  with ``cross_resolution``, the left image is HR and the right one LR. ``scores_csv`` writes every
  pair's score and fold; the JSON holds the protocol and every fold's threshold, so
  :func:`~fskd_cli.evaluate.verification.accuracy_from_scores` recomputes the accuracy exactly.
- 1:N identification (:func:`identification_stage`): a manifest with ``probe``/``gallery``/``distractor``
  roles (TinyFace); CMC rank-1/5/10/20 with the distractors in the gallery, mAP, and a CMC PNG.
- classification (:func:`classification_stage`): digits, SVHN.

Every result row says what made it: a non-default variant of the protocol is part of the ``dataset``
column (``agedb[authors]``, ``agedb[cross-res]``), so rows of different protocols are never averaged
together by ``fskd analyze table``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.dataset import PairDataset
from ..data.manifest import Row, read_manifest, read_meta, read_pairs
from ..core.errors import FskdError
from ..core.scale import Scale
from ..core.checkpoint import build_model, load_checkpoint
from .embed import ResizedDataset, embed_with_mirror
from .identification import DISTRACTOR, REPORTED_RANKS, identification_accuracy
from .plots import plot_cmc, plot_roc
from .results import record
from .verification import FARS, PROTOCOLS, save_scores, verification_accuracy

# benchmark name -> (task, default data folder); `verification`/`identification` take any prepared set
BENCHMARKS: dict[str, tuple[str, str | None]] = {
    "digits": ("classification", "data/digits"),
    "svhn": ("classification", "data/svhn"),
    "verification": ("verification", None),
    "agedb": ("verification", "data/agedb"),
    "lfw": ("verification", "data/lfw"),
    "cfp-fp": ("verification", "data/cfp-fp"),
    "identification": ("identification", None),
    "tinyface": ("identification", "data/tinyface"),
}
N_FOLDS = 10
MAX_RANK = max(REPORTED_RANKS)


def evaluate_benchmark(benchmark: str, ckpt: str | Path, *, scale: int = 1, data: str | Path | None = None,
                       results: str | Path = "results.csv", protocol: str | None = None,
                       cross_resolution: bool = False, scores_csv: str | Path | None = None,
                       roc_png: str | Path | None = None, cmc_png: str | Path | None = None, flip: bool = True,
                       split: str | None = None, device: str = "cpu", batch_size: int = 128) -> dict[str, Any]:
    """Evaluate ``ckpt`` on ``benchmark`` (a key of :data:`BENCHMARKS`); return the eval JSON's payload.

    The ROC (verification) or CMC (identification) PNG goes by default beside the JSON in
    ``runs/NAME/eval/``. Options that do not apply to the benchmark's task raise :class:`FskdError`.
    """
    if benchmark not in BENCHMARKS:
        raise FskdError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    task, default_data = BENCHMARKS[benchmark]
    if data is None:
        if default_data is None:
            raise FskdError(f"`fskd eval {benchmark}` needs --data (a folder written by `fskd prepare`)")
        data = default_data
    _check_options(benchmark, task, protocol=protocol is not None, cross_resolution=cross_resolution,
                   save_scores=scores_csv is not None, roc=roc_png is not None, cmc=cmc_png is not None,
                   split=split is not None)
    if protocol is not None and protocol not in PROTOCOLS:
        raise FskdError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    name = benchmark if default_data else Path(data).name
    if task == "verification":
        return verification_stage(ckpt, data, dataset=name, scale=scale, protocol=protocol or "insightface",
                                  cross_resolution=cross_resolution, results=results, scores_csv=scores_csv,
                                  roc_png=roc_png, device=device, batch_size=batch_size, benchmark=benchmark)
    if task == "identification":
        return identification_stage(ckpt, data, dataset=name, scale=scale, cross_resolution=cross_resolution,
                                    flip=flip, results=results, cmc_png=cmc_png, device=device, batch_size=batch_size,
                                    benchmark=benchmark)
    return classification_stage(ckpt, data, dataset=name, scale=scale, split=split or "test", results=results,
                                device=device, batch_size=batch_size, benchmark=benchmark)


# option -> the tasks it applies to
_OPTION_TASKS = {
    "protocol": ("verification",),
    "save_scores": ("verification",),
    "roc": ("verification",),
    "cmc": ("identification",),
    "cross_resolution": ("verification", "identification"),
    "split": ("classification",),  # 1:1 and 1:N sets are defined by their pairs and roles, not a split
}


def _check_options(benchmark: str, task: str, **given: bool) -> None:
    """An option given to a benchmark it does not apply to is an error, never silently ignored."""
    for option, is_given in given.items():
        if is_given and task not in _OPTION_TASKS[option]:
            raise FskdError(f"--{option.replace('_', '-')} does not apply to `fskd eval {benchmark}` (a {task} "
                            f"benchmark; it is for {' and '.join(_OPTION_TASKS[option])})")


# ---------------------------------------------------------------------------------------------------
# shared checks


def _load(ckpt: str | Path, data: str | Path, task: str, benchmark: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkpoint and the dataset's meta, with the dataset checked to be of ``task``."""
    ck = load_checkpoint(ckpt)
    meta = read_meta(data)
    # a training set with held-out identities (`fskd prepare holdout`) carries pairs.csv: it verifies too
    holdout_pairs = task == "verification" and (Path(data) / "pairs.csv").exists()
    if meta["task"] != task and not holdout_pairs:
        raise FskdError(f"{Path(data) / 'meta.yaml'}: a {meta['task']} set, but `fskd eval {benchmark}` "
                        f"needs {'an' if task[0] in 'aeiou' else 'a'} {task} set")
    return ck, meta


def _backbone(ck: dict[str, Any], meta: dict[str, Any], data: str | Path) -> torch.nn.Module:
    """The checkpoint's backbone, checked to take the dataset's image size (native-size sets are resized)."""
    model, _ = build_model(ck)
    size, image_size = getattr(model, "input_size", None), meta.get("image_size")
    if image_size and size and image_size != size:
        raise FskdError(f"{ck['path']}: {ck['arch']['name']} takes {size}px inputs, but {data} holds "
                        f"{image_size}px images; evaluate it on a set prepared at {size}px")
    return model


def _images(data: str | Path, rows: list[Row], scale: int, meta: dict[str, Any], size: int | None) -> PairDataset:
    """The images of ``rows``; native-size sets (no ``image_size``) are resized to the model's input."""
    if not meta.get("image_size") and size:
        return ResizedDataset(str(data), rows, size, Scale.parse(scale).factors)
    return PairDataset(data, "", Scale.parse(scale).factors, cache=False, rows=rows)


def _embed(model: torch.nn.Module, data: str | Path, rows: list[Row], scale: int, meta: dict[str, Any],
           device: str, batch_size: int, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Float64 embeddings of ``rows`` at ``scale`` and of their mirrors."""
    ds = _images(data, rows, scale, meta, getattr(model, "input_size", None))
    emb, mirror = embed_with_mirror(model, ds, scale, batch_size=batch_size, device=device, label=label)
    return emb.double().numpy(), mirror.double().numpy()


def dataset_label(dataset: str, protocol: str | None = None, cross_resolution: bool = False) -> str:
    """The ``dataset`` column of results.csv: the name, plus any non-default protocol variant in brackets."""
    variants = (["cross-res"] if cross_resolution else []) + ([protocol] if protocol not in (None, "insightface") else [])
    return f"{dataset}[{','.join(variants)}]" if variants else dataset


def _eval_dir(ck: dict[str, Any]) -> Path:
    return Path(ck["path"]).parent / "eval"


def _run_label(ck: dict[str, Any]) -> str:
    """The curve's legend: the run's folder name, and its method when the name does not say it."""
    method = ck["method"] if ck["kind"] == "student" else "teacher"
    run = Path(ck["path"]).parent.name
    return run if method in run else f"{run} ({method})"


# ---------------------------------------------------------------------------------------------------
# 1:1 verification


def read_verification_pairs(data: str | Path, rows: Sequence[Row]) -> tuple[list[tuple[str, str, int]], list[int], list[int]]:
    """``pairs.csv`` checked against the manifest: the pairs, and each side's row index (-1: no image).

    An empty path is an image that failed preparation (the pair is kept, and counted wrong); a path
    that is not a usable manifest row, a ``same`` other than 0/1 or a pair count that is not a
    multiple of 10 is a broken file, and raises :class:`FskdError` naming it.
    """
    path = Path(data) / "pairs.csv"
    try:
        pairs = read_pairs(data)
    except (KeyError, ValueError) as e:
        raise FskdError(f"{path}: not a pairs file with columns left,right,same ({e})") from None
    if not pairs:
        raise FskdError(f"{path}: no pairs")
    if len(pairs) % N_FOLDS:
        raise FskdError(f"{path}: {len(pairs)} pairs cannot be split into {N_FOLDS} equal consecutive folds")
    index = {r.path: i for i, r in enumerate(rows)}
    left, right = [], []
    for line, (a, b, same) in enumerate(pairs, start=2):
        if same not in (0, 1):
            raise FskdError(f"{path}, line {line}: same must be 0 or 1, got {same}")
        for side, out in ((a, left), (b, right)):
            if side and side not in index:
                raise FskdError(f"{path}, line {line}: {side!r} is not a usable image of {Path(data) / 'manifest.csv'}")
            out.append(index[side] if side else -1)
    if len({s for _, _, s in pairs}) < 2:
        raise FskdError(f"{path}: all pairs are {'same' if pairs[0][2] else 'different'}-identity; a ROC needs both")
    return pairs, left, right


def _gather(emb: np.ndarray, positions: Sequence[int]) -> np.ndarray:
    """Rows of ``emb`` at ``positions``; position -1 (a missing image) becomes a NaN row."""
    positions = np.asarray(positions)
    out = np.full((len(positions), emb.shape[1]), np.nan)
    out[positions >= 0] = emb[positions[positions >= 0]]
    return out


def verification_stage(ckpt: str | Path, data: str | Path, *, dataset: str, scale: int = 1,
                       protocol: str = "insightface", cross_resolution: bool = False,
                       results: str | Path = "results.csv", scores_csv: str | Path | None = None,
                       roc_png: str | Path | None = None, json_path: str | Path | None = None,
                       device: str = "cpu", batch_size: int = 128, benchmark: str = "verification") -> dict[str, Any]:
    """10-fold verification of ``ckpt`` on the pairs of ``data`` at ``scale``; see the module docstring."""
    if protocol not in PROTOCOLS:
        raise FskdError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    ck, meta = _load(ckpt, data, "verification", benchmark)
    rows = read_manifest(data)
    pairs, left_pos, right_pos = read_verification_pairs(data, rows)
    model = _backbone(ck, meta, data)
    left_scale = 1 if cross_resolution else scale

    # embed each image once per scale it is seen at
    left_ids = sorted({i for i in left_pos if i >= 0})
    right_ids = sorted({i for i in right_pos if i >= 0})
    shared = left_scale == scale
    first_ids = sorted(set(left_ids) | set(right_ids)) if shared else left_ids
    emb, mirror = _embed(model, data, [rows[i] for i in first_ids], left_scale, meta, device, batch_size, dataset)
    where = {i: k for k, i in enumerate(first_ids)}
    lp = [where[i] if i >= 0 else -1 for i in left_pos]
    l_emb, l_mirror = _gather(emb, lp), _gather(mirror, lp)
    if not shared:
        emb, mirror = _embed(model, data, [rows[i] for i in right_ids], scale, meta, device, batch_size, dataset)
        where = {i: k for k, i in enumerate(right_ids)}
    rp = [where[i] if i >= 0 else -1 for i in right_pos]
    r_emb, r_mirror = _gather(emb, rp), _gather(mirror, rp)
    same = np.array([s for _, _, s in pairs])
    try:
        result = verification_accuracy(l_emb, l_mirror, r_emb, r_mirror, same, protocol=protocol, n_folds=N_FOLDS)
    except ValueError as e:
        raise FskdError(f"{Path(data) / 'pairs.csv'}: {e}") from None

    label = dataset_label(dataset, protocol, cross_resolution)
    stem = f"{dataset}_x{scale}{'_cross' if cross_resolution else ''}_{protocol}"
    json_path = Path(json_path) if json_path else _eval_dir(ck) / f"{stem}.json"
    roc_png = Path(roc_png) if roc_png else json_path.with_name(f"{json_path.stem}_roc.png")
    if scores_csv is not None:
        save_scores(scores_csv, [p[0] for p in pairs], [p[1] for p in pairs], same, result)
    res_word = f"HR vs x{scale} LR" if cross_resolution else f"x{scale}" if scale > 1 else "HR"
    plot_roc({_run_label(ck): result}, roc_png, f"{dataset} verification, {res_word} ({protocol} protocol)")

    metrics = {"accuracy": result.accuracy, "accuracy_std": result.std,
               **{f"tar@far={far:.0e}".replace("e-0", "e-"): result.tar_at_far[far] for far in FARS},
               "auc": result.auc}
    rule = "same iff score > threshold" if result.greater_is_same else "same iff score < threshold"
    score = ("cosine of the [image, mirror] concatenations after subtracting the other folds' mean"
             if protocol == "authors" else "squared L2 distance of the L2-normalised (image + mirror) sums")
    details = {
        "data": str(data), "protocol": protocol, "cross_resolution": cross_resolution,
        "left_scale": left_scale, "right_scale": scale, "pairs": len(pairs), "folds": N_FOLDS,
        "missing_pairs": result.missing_pairs,
        "missing_pairs_rule": "a pair with an image that failed preparation scores nan and counts as wrong",
        "images": len(set(left_ids) | set(right_ids)), "score": score, "greater_is_same": result.greater_is_same,
        "decision": rule, "fold_thresholds": result.fold_thresholds, "fold_accuracies": result.fold_accuracies,
        "tar_at_far": {f"{far:g}": v for far, v in result.tar_at_far.items()},
        "roc_png": str(roc_png), "scores_csv": None if scores_csv is None else str(scores_csv),
        "recompute": "fskd_cli.evaluate.verification.accuracy_from_scores(scores_csv, fold_thresholds, "
                     "greater_is_same) == metrics['accuracy']",
    }
    payload = record(results, json_path, ck, label, str(scale), metrics, details)
    return {**payload, "json": str(json_path)}


# ---------------------------------------------------------------------------------------------------
# 1:N identification


def _roles(data: str | Path, rows: list[Row]) -> tuple[list[Row], list[Row], int]:
    """Probe rows, gallery rows (distractors included) and the number of rows with no role."""
    probes = [r for r in rows if r.role == "probe"]
    gallery = [r for r in rows if r.role in ("gallery", "distractor")]
    manifest = Path(data) / "manifest.csv"
    if not probes or not gallery:
        missing = "probe" if not probes else "gallery"
        raise FskdError(f"{manifest}: no usable rows with role '{missing}'; an identification set needs "
                        "probe and gallery (and optionally distractor) roles")
    return probes, gallery, len(rows) - len(probes) - len(gallery)


def identification_stage(ckpt: str | Path, data: str | Path, *, dataset: str, scale: int = 1,
                         cross_resolution: bool = False, flip: bool = True, results: str | Path = "results.csv",
                         cmc_png: str | Path | None = None, json_path: str | Path | None = None,
                         device: str = "cpu", batch_size: int = 128, benchmark: str = "identification"
                         ) -> dict[str, Any]:
    """Rank-k (CMC) and mAP of ``ckpt`` searching the probes of ``data`` in its gallery plus distractors.

    Probes are seen at ``scale``; so is the gallery, unless ``cross_resolution`` (gallery HR). With
    ``flip`` an image's feature is the sum of its and its mirror's embeddings.
    """
    ck, meta = _load(ckpt, data, "identification", benchmark)
    probes, gallery, unused = _roles(data, read_manifest(data))
    model = _backbone(ck, meta, data)
    gallery_scale = 1 if cross_resolution else scale

    def features(rows: list[Row], s: int, what: str) -> np.ndarray:
        emb, mirror = _embed(model, data, rows, s, meta, device, batch_size, f"{dataset} {what}")
        return emb + mirror if flip else emb

    probe_feats = features(probes, scale, "probes")
    gallery_feats = features(gallery, gallery_scale, "gallery")
    gallery_labels = np.array([DISTRACTOR if r.role == "distractor" else r.label for r in gallery])
    max_rank = min(MAX_RANK, len(gallery))
    try:
        result = identification_accuracy(probe_feats, np.array([r.label for r in probes]), gallery_feats,
                                         gallery_labels, max_rank=max_rank)
    except ValueError as e:
        raise FskdError(f"{Path(data) / 'manifest.csv'}: {e}") from None

    label = dataset_label(dataset, None, cross_resolution)
    stem = f"{dataset}_x{scale}{'_cross' if cross_resolution else ''}"
    json_path = Path(json_path) if json_path else _eval_dir(ck) / f"{stem}.json"
    cmc_png = Path(cmc_png) if cmc_png else json_path.with_name(f"{json_path.stem}_cmc.png")
    res_word = f"x{scale} probes vs HR gallery" if cross_resolution else f"x{scale}" if scale > 1 else "native/HR"
    plot_cmc({_run_label(ck): result.cmc}, cmc_png, f"{dataset} identification, {res_word} (distractors in gallery)")

    metrics = {f"rank{k}": v for k, v in result.ranks.items()}
    metrics["mAP"] = result.mean_ap
    details = {
        "data": str(data), "cross_resolution": cross_resolution, "probe_scale": scale, "gallery_scale": gallery_scale,
        "flip": "embedding + mirror embedding" if flip else "no mirror",
        "resized": None if meta.get("image_size") else f"bilinear to {getattr(model, 'input_size', '?')}px",
        "probes": len(probes), "probes_scored": result.n_probes, "probes_without_match": result.probes_without_match,
        "gallery": int((gallery_labels != DISTRACTOR).sum()), "distractors": int((gallery_labels == DISTRACTOR).sum()),
        "rows_without_role": unused, "similarity": "cosine", "ties": "counted against the probe",
        "cmc": [float(c) for c in result.cmc], "cmc_png": str(cmc_png),
    }
    payload = record(results, json_path, ck, label, str(scale), metrics, details)
    return {**payload, "json": str(json_path)}


# ---------------------------------------------------------------------------------------------------
# classification


def classification_stage(ckpt: str | Path, data: str | Path, *, dataset: str, scale: int = 1, split: str = "test",
                         results: str | Path = "results.csv", device: str = "cpu", batch_size: int = 256,
                         benchmark: str | None = None) -> dict[str, Any]:
    """Accuracy of the checkpoint's head on the ``split`` images of ``data`` at ``scale``."""
    from .classification import classification_accuracy

    ck, meta = _load(ckpt, data, "classification", benchmark or dataset)
    if meta.get("num_classes") and meta["num_classes"] > ck["num_classes"]:
        raise FskdError(f"{ck['path']}: a {ck['num_classes']}-class model cannot classify {data} "
                        f"({meta['num_classes']} classes)")
    _backbone(ck, meta, data)
    metrics, details = classification_accuracy(ck, str(data), scale, split, device, batch_size)
    json_path = _eval_dir(ck) / f"{dataset}_x{scale}.json"
    payload = record(results, json_path, ck, dataset, str(scale), metrics, {"data": str(data), **details})
    return {**payload, "json": str(json_path)}
