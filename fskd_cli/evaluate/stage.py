"""The ``fskd eval`` stage: a checkpoint and a prepared dataset in; the eval JSON, a figure and one
``results.csv`` row per metric out.

Three kinds of benchmark: 1:1 verification (:mod:`.pairs`), 1:N identification (:mod:`.search`) and
classification (here). The CLI only parses options and calls :func:`evaluate_benchmark`.

Every result row says what made it: a non-default variant of the protocol is part of the ``dataset``
column (``agedb[authors]``, ``agedb[cross-res]``), so rows of different protocols are never averaged
together by ``fskd analyze table``. LR test images are made from HR with the run's own training
degradation unless ``lr_source='disk'`` (:class:`~.embed.LowRes`); the eval JSON records which.
An eval first checks that an in-place set's records are still those prepared (``data.manifest.check_source``),
and holds its outputs in the run's ``eval/`` folder while it writes them: one eval of a benchmark at a scale
at a time (others of the same run go on beside it).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from ..core.checkpoint import load_checkpoint
from ..core.errors import FskdError
from ..core.guard import read_claim
from ..core.lock import FolderLock, hold_folder
from ..core.results import check_results_csv
from ..core.scale import Scale, one_factor
from ..data.manifest import check_source
from .benchmarks import BENCHMARKS
from .classification import classification_accuracy
from .inputs import Evaluation
from .pairs import verification_stage
from .search import identification_stage

console = Console(stderr=True)
# option -> the tasks it applies to
_OPTION_TASKS = {
    "protocol": ("verification",),
    "save_scores": ("verification",),
    "roc": ("verification",),
    "cmc": ("identification",),
    "cross_resolution": ("verification", "identification"),
    "split": ("classification",),  # 1:1 and 1:N sets are defined by their pairs and roles, not a split
}


def evaluate_benchmark(benchmark: str, ckpt: str | Path, *, scale: Scale = Scale.x1, data: str | Path | None = None,
                       results: str | Path = "results.csv", protocol: str | None = None,
                       cross_resolution: bool = False, scores_csv: str | Path | None = None,
                       roc_png: str | Path | None = None, cmc_png: str | Path | None = None, flip: bool = True,
                       split: str | None = None, device: str = "auto", batch_size: int = 128,
                       lr_source: str = "degrade") -> dict[str, Any]:
    """Evaluate ``ckpt`` on ``benchmark`` (a key of :data:`BENCHMARKS`); return the eval JSON's payload.

    The ROC (verification) or CMC (identification) PNG goes by default beside the JSON in
    ``runs/NAME/eval/``. Options that do not apply to the benchmark's task raise :class:`FskdError`.
    """
    if benchmark not in BENCHMARKS:
        raise FskdError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
    task, default_data = BENCHMARKS[benchmark]
    if data is None and default_data is None:
        raise FskdError(f"`fskd eval {benchmark}` needs --data (a folder written by `fskd prepare`)")
    data = data if data is not None else default_data
    _check_options(benchmark, task, protocol=protocol is not None, cross_resolution=cross_resolution,
                   save_scores=scores_csv is not None, roc=roc_png is not None, cmc=cmc_png is not None,
                   split=split is not None)
    factor = one_factor(scale)
    if cross_resolution and factor == 1:  # HR against HR: the HR figures again, under a cross-resolution label
        raise FskdError("--cross-resolution compares HR images with LR copies; give --scale 2, 4 or 8")
    results = check_results_csv(results)
    _check_distinct({"--results": results, "--save-scores": scores_csv, "--roc": roc_png, "--cmc": cmc_png})
    # the checkpoint first, then the data: the mistakes of the file named first are reported first
    notes = [f"{ckpt}: {note}" for note in load_checkpoint(ckpt).notes]  # what an older checkpoint lacked: said
    notes += check_source(data)  # an in-place set whose .rec was replaced is refused here
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    common = {"dataset": benchmark if default_data else Path(data).name, "scale": factor, "results": results,
              "device": device, "batch_size": batch_size, "benchmark": benchmark, "lr_source": lr_source}
    with _hold_eval_output(ckpt, common["dataset"], factor) or nullcontext():
        if task == "verification":
            return verification_stage(ckpt, data, protocol=protocol or "insightface", cross_resolution=cross_resolution,
                                      scores_csv=scores_csv, roc_png=roc_png, **common)
        if task == "identification":
            return identification_stage(ckpt, data, cross_resolution=cross_resolution, flip=flip, cmc_png=cmc_png,
                                        **common)
        return classification_stage(ckpt, data, split=split or "test", **common)


def _hold_eval_output(ckpt: str | Path, dataset: str, scale: int) -> FolderLock | None:
    """The lock on what this eval writes in the run's ``eval/`` folder (the JSON and figures of ``dataset`` at
    ``scale``): one such eval at a time, while evals of other benchmarks or scales of the run go on beside it.

    Only a folder fskd wrote (a run, an imported teacher) gets one, so nothing is written beside a checkpoint
    that turns out not to load; the loader says what is wrong with a missing one.
    """
    ckpt = Path(ckpt)
    run = ckpt if ckpt.is_dir() else ckpt.parent
    try:
        ours = ckpt.exists() and read_claim(run) is not None
    except FskdError:  # a damaged marker: not a folder to write into first
        ours = False
    if not ours:
        return None
    return hold_folder(run / "eval", f"fskd eval of {dataset} at scale {scale}", "wait for it to finish",
                       name=f".{dataset}_x{scale}.lock")


def _check_distinct(outputs: dict[str, str | Path | None]) -> None:
    """Two outputs named by one path would be written one over the other (the scores, then results rows appended to
    them, refused only after the work): refused before any of it."""
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        where = Path(path).resolve()
        if where in seen:
            raise FskdError(f"{path}: named by both {seen[where]} and {option}; give each output a file of its own")
        seen[where] = option


def _check_options(benchmark: str, task: str, **given: bool) -> None:
    """An option given to a benchmark it does not apply to is an error, never silently ignored."""
    for option, is_given in given.items():
        if is_given and task not in _OPTION_TASKS[option]:
            raise FskdError(f"--{option.replace('_', '-')} does not apply to `fskd eval {benchmark}` (a {task} "
                            f"benchmark; it is for {' and '.join(_OPTION_TASKS[option])})")


def classification_stage(ckpt: str | Path, data: str | Path, *, dataset: str, scale: int = 1, split: str = "test",
                         results: str | Path = "results.csv", device: str = "auto", batch_size: int = 256,
                         benchmark: str | None = None, lr_source: str = "degrade") -> dict[str, Any]:
    """Accuracy of the checkpoint's head on the ``split`` images of ``data`` at ``scale``."""
    ev = Evaluation.open(ckpt, data, "classification", benchmark or dataset, lr_source=lr_source, device=device,
                         batch_size=batch_size, head=True)
    ck = ev.model.checkpoint
    if ev.meta.get("num_classes") and ev.meta["num_classes"] > ck.num_classes:
        raise FskdError(f"{ck.path}: a {ck.num_classes}-class model cannot classify {data} "
                        f"({ev.meta['num_classes']} classes)")
    # another split than test is a variant of its own (``digits[train]``, its own JSON): recorded as plain ``digits``,
    # a training-set accuracy would replace the test accuracy in every table
    label, stem = (dataset, dataset) if split == "test" else (f"{dataset}[{split}]", f"{dataset}_{split}")
    json_path = ev.json_path(f"{stem}_x{scale}")  # before the work: a file there that no eval wrote is refused
    metrics, details = classification_accuracy(ev, scale, split)
    return ev.record(results, json_path, label, scale, metrics, details)
