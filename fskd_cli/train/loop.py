"""The one training loop. A teacher is a run with no distiller on HR images; a student is a run on LR
images whose loss adds a registered distiller's term computed against a frozen teacher.

Properties of the loop, not copies of it: mixed precision on CUDA, channels_last, DDP under torchrun
(each process takes its share of every global batch, so a run's batches do not depend on the number of
processes), atomic checkpoints, exact ``--resume``, a stop on a non-finite loss that keeps the last good
checkpoint. Loss values are read from the device only at log and checkpoint steps. The run is built and
checked (:func:`.build.build_run`) before any image is read; log rows go to callbacks (:mod:`.log`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader

from ..core.checkpoint import save_checkpoint
from ..core.config import RunConfig
from ..core.errors import FskdError
from ..core.guard import claim_output, note_checkpoint, read_claim
from ..core.io import check_writable, write_yaml
from ..core.lock import FolderLock
from ..core.stop import Stopped, StopRequest, ignore_in_worker
from ..data.dataset import PairBatchSampler, PairDataset
from ..data.degrade import degrade_batch
from .build import Run, build_run, check_checkpoint, restore
from .log import CsvLog, LogCallback
from .step import TrainStep

console = Console(stderr=True)


def train(cfg: RunConfig, out: str | Path, *, kind: str, resume: bool = False, stop_after: int | None = None,
          force: bool = False) -> Path:
    """Train a teacher (``kind='teacher'``: HR, no distiller) or a student; returns the checkpoint path.

    ``stop_after`` ends the run (with a checkpoint) after that step, keeping the full run's schedule;
    ``force`` starts over in a folder that holds another run. SIGTERM or SIGUSR1 end it at the next step
    boundary, with a checkpoint (:class:`~fskd_cli.core.stop.Stopped`).
    """
    check_writable(out, folder=True)  # a doomed --out is refused before the run is built
    with StopRequest() as stop:
        run = build_run(cfg, out, kind, resume=resume, force=force)
        if cfg.data.workers is None:  # recorded in config.yaml and the checkpoint as the number used
            # a cached set is in memory: a worker would only copy its batches between processes
            cfg.data.workers = 0 if cfg.data.cache else run.dist.loader_workers()
        if resume:
            restore(run)
            if _nothing_to_do(run, stop_after):
                return run.ckpt_path
        callbacks, lock = _begin(run, resume, force)
        try:
            end = min(run.schedule.total_steps, stop_after) if stop_after else run.schedule.total_steps
            fit(run, _loader(run, end), callbacks, end, stop)
        finally:
            if lock is not None:
                lock.release()
    return run.ckpt_path


def _nothing_to_do(run: Run, stop_after: int | None) -> bool:
    """Whether a resumed run already stands where it was asked to go (said in one line); a ``--stop-after``
    behind the checkpoint is a mistake: no run can go back to that step."""
    total = run.schedule.total_steps
    if stop_after is not None and stop_after < run.step:
        raise FskdError(f"--stop-after {stop_after}: {run.ckpt_path} is already at step {run.step} (of {total}); "
                        "give a later step, or leave --stop-after out to finish the run")
    done = run.step >= total or stop_after == run.step
    if done and run.dist.main:
        console.print(f"[green]{run.ckpt_path}: already finished ({run.step} steps)" if run.step >= total else
                      f"[green]{run.ckpt_path}: already at step {run.step} (of {total}); nothing to do")
    return done


def _begin(run: Run, resume: bool, force: bool) -> tuple[list[LogCallback], FolderLock | None]:
    """Claim and hold ``--out`` and open the log on the main process (rank 0 writes, so it alone holds the
    folder); every process learns whether that worked, so a refusal is every process's one-line error instead
    of a wait at the next barrier."""
    callbacks: list[LogCallback] = []
    lock: FolderLock | None = None
    failure: FskdError | None = None
    if run.dist.main:
        try:
            lock = _claim(run, resume, force)
            callbacks = _callbacks(run)
        except FskdError as e:
            failure = e
            if lock is not None:
                lock.release()
    message = run.dist.share(str(failure) if failure else None)
    if failure:
        raise failure
    if message:
        raise FskdError(message)
    return callbacks, lock


def _claim(run: Run, resume: bool, force: bool) -> FolderLock | None:
    """Make ``--out`` ours (a resumed checkpoint already proved it is) and hold it: one writer at a time; record
    the config, report the run. Returns the folder's lock."""
    started_over = force and not resume and read_claim(run.out) is not None
    lock = claim_output(run.out, kind=run.kind, force=force or resume, hold=True)
    try:
        check_checkpoint(run.out, resume, force)
        if started_over:  # --force: the old run's checkpoint must not outlive its config
            run.ckpt_path.unlink(missing_ok=True)
        write_yaml(run.out / "config.yaml", {"kind": run.kind, **run.cfg.to_dict()})
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    t, s = run.cfg.train, run.schedule
    console.print(f"[bold]{run.kind}[/] {run.out}: {len(run.rows)} images, {run.num_classes} classes, scale "
                  f"{'/'.join(map(str, run.scales))}, global batch {t.batch_size} on {run.dist.world_size} process(es) "
                  f"({run.device}, {run.cfg.data.workers} loader worker(s) each), lr {t.lr}, {s.total_steps} steps "
                  f"({s.steps_per_epoch}/epoch), from step {run.step}")
    return lock


def _callbacks(run: Run) -> list[LogCallback]:
    callbacks: list[LogCallback] = [CsvLog(run.out / "log.csv", run.step)]
    if run.cfg.train.tensorboard:
        from .tensorboard import TensorBoardLogger  # optional dependency: imported only when asked for

        callbacks.append(TensorBoardLogger(run.out / "tb"))
    return callbacks


def _loader(run: Run, end: int) -> DataLoader:
    """This process's batches from the run's current step to ``end``."""
    cfg = run.cfg
    # with data.degrade=device, or a scale not on disk, the LR copies are made from the HR batch on the device
    ds = PairDataset(cfg.data.path, cfg.data.train_split, run.scales, cache=cfg.data.cache, rows=run.rows,
                     read_lr=cfg.data.degrade == "disk", lr_on_device=True)
    sampler = PairBatchSampler(len(ds), cfg.train.batch_size, end, cfg.seed, run.scales, cfg.data.flip, start_step=run.step)
    return DataLoader(ds, batch_sampler=_Shard(sampler, run.dist.rank, run.dist.world_size), collate_fn=_already_collated,
                      num_workers=cfg.data.workers, pin_memory=run.device.type == "cuda",
                      persistent_workers=cfg.data.workers > 0, worker_init_fn=ignore_in_worker)


def fit(run: Run, loader: DataLoader, callbacks: list[LogCallback], end: int, stop: StopRequest | None = None) -> None:
    """Step through ``loader``: log rows every ``train.log_every`` steps, checkpoints every ``ckpt_every`` and
    when ``stop`` records a signal on any process (then :class:`Stopped` is raised)."""
    t, s, d = run.cfg.train, run.schedule, run.distill
    step_fn = TrainStep(_wrap(run), d.teacher, d.teacher_tap, run.optimizer, run.scaler, run.amp_dtype, run.device.type)
    ckpt_every = t.ckpt_every or s.steps_per_epoch
    clock = _Clock()
    run.model.train(), run.head.train()
    try:
        with _progress(run.dist.main) as progress:
            task = progress.add_task(run.kind, total=s.total_steps, completed=run.step, loss=float("nan"))
            for hr, lr, labels, scale in loader:
                labels = labels.to(run.device, non_blocking=True)
                out = step_fn(*_inputs(run, hr, lr, scale, lr_read=loader.dataset.read_lr), labels, scale)
                run.scheduler.step()
                run.step += 1
                clock.seen += len(labels)
                run.meters.add(**out, train_acc=(out["logits"].argmax(1) == labels).float().mean())
                progress.advance(task)
                log_now = run.step % t.log_every == 0 or run.step == s.total_steps
                saved = run.step % ckpt_every == 0 or run.step == end
                if log_now or saved:
                    row = _row(run, clock)  # a non-finite loss stops the run before its checkpoint is written
                    if log_now:
                        for callback in callbacks:
                            callback.on_log(row)
                        progress.update(task, loss=row["loss"])
                        run.meters.reset()
                        clock.lap()
                    if saved:
                        _save(run)
                _stop_if_asked(run, stop, saved, end)
    finally:
        _close(callbacks, d.teacher_tap)


def _stop_if_asked(run: Run, stop: StopRequest | None, saved: bool, end: int) -> None:
    """At a step boundary before the last: if any process got SIGTERM or SIGUSR1, every process stops here,
    the checkpoint written. The processes agree through one CPU integer per step (no wait for the GPU)."""
    signum = run.dist.max(stop.signum if stop is not None else 0)
    if signum and run.step < end:
        if not saved:
            _finite_means(run)
            _save(run)
        raise Stopped(signum, run.step, run.ckpt_path)


def _inputs(run: Run, hr: torch.Tensor, lr: torch.Tensor, scale: torch.Tensor,
            lr_read: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(the teacher's HR input, the trained model's input) on the device, in the run's input convention.

    ``lr_read``: the loader read the LR images; if not, they are made here from the HR batch.
    """
    hr_x = run.preprocess.apply(hr, run.device, run.channels_last)
    if run.kind != "student":
        return hr_x, hr_x
    if not lr_read:
        meta = {k: v for k, v in run.meta.get("degradation", {}).items() if k in ("interpolation", "antialias")}
        return hr_x, degrade_batch(hr_x, scale, **meta)  # scales stay on the CPU: no host sync
    return hr_x, run.preprocess.apply(lr, run.device, run.channels_last)


def _row(run: Run, clock: _Clock) -> dict[str, Any]:
    """The log row at the current step (see :func:`_finite_means`)."""
    means = _finite_means(run)
    now = time.time()
    return {"step": run.step, "epoch": run.step / run.schedule.steps_per_epoch, "lr": run.scheduler.get_last_lr()[0],
            **means, "images_per_s": clock.seen * run.dist.world_size / (now - clock.t_lap), "elapsed_s": now - clock.t0}


def _finite_means(run: Run) -> dict[str, float]:
    """The meters' means since the last log row; a non-finite mean loss stops the run, keeping the last checkpoint."""
    means = run.meters.means()
    if not all(math.isfinite(v) for v in means.values()):
        kept = (f"the last good checkpoint is kept at {run.ckpt_path}" if run.ckpt_path.exists()
                else "no checkpoint was written yet")
        raise FskdError(f"{run.out}: the loss became {means['loss']} by step {run.step}; stopped, {kept}")
    return means


def _save(run: Run) -> None:
    if run.dist.main:
        save_checkpoint(run.ckpt_path, run.checkpoint())
        note_checkpoint(run.ckpt_path)
    run.dist.barrier()


def _wrap(run: Run) -> nn.Module:
    """The trained module as the step calls it: under DDP with several processes, compiled if asked."""
    module: nn.Module = run.module
    if run.dist.world_size > 1:
        device_ids = [run.device.index] if run.device.type == "cuda" else None
        module = nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
    return torch.compile(module) if run.cfg.train.compile else module


def _close(callbacks: list[LogCallback], teacher_tap: Any) -> None:
    for callback in callbacks:
        close = getattr(callback, "close", None)
        if close is not None:
            close()
    if teacher_tap is not None:
        teacher_tap.remove()


class _Clock:
    """Wall time since the start and since the last log row, and images seen since then (throughput)."""

    def __init__(self) -> None:
        self.t0 = self.t_lap = time.time()
        self.seen = 0

    def lap(self) -> None:
        self.t_lap, self.seen = time.time(), 0


class _Shard:
    """This process's share of every global batch (all of it in a single-process run)."""

    def __init__(self, sampler: PairBatchSampler, rank: int, world: int) -> None:
        self.sampler, self.rank, self.world = sampler, rank, world

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        for keys in self.sampler:
            yield keys[self.rank::self.world]


def _already_collated(batch: Any) -> Any:
    """The dataset's ``__getitems__`` returns stacked tensors: the loader passes them on as they are."""
    return batch


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, disable=not enabled, transient=False)
