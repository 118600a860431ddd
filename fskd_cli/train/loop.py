"""The one training loop. A teacher is a run with no distiller on HR images; a student is a run on LR
images whose loss adds a registered distiller's term computed against a frozen teacher.

Properties of the loop, not copies of it: mixed precision on CUDA, channels_last, DDP under torchrun
(each process takes its share of every global batch, so a run's batches do not depend on the number of
processes), atomic checkpoints, exact ``--resume``, a stop on a non-finite loss that keeps the last good
checkpoint. Loss values are read from the device only at log and checkpoint steps.
"""

from __future__ import annotations

import contextlib
import csv
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader

from ..core.config import RunConfig
from ..data.dataset import PairBatchSampler, PairDataset, to_input
from ..data.degrade import degrade_batch
from ..data.manifest import fingerprint, read_meta
from ..distill import Distiller, create_distiller, get_distiller_class
from ..core.errors import FskdError
from ..core.scale import Scale
from ..core.io import write_csv, write_yaml
from ..models import create_model
from ..models.heads import create_head
from ..models.tap import FeatureTap
from ..core.checkpoint import build_model, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import Dist

LOG_FIELDS = ["step", "epoch", "lr", "loss", "task_loss", "distill_loss", "train_acc", "images_per_s", "elapsed_s"]
console = Console(stderr=True)


class StudentStep(nn.Module):
    """Everything that trains, in one module so DDP syncs all of it: backbone, head, distiller."""

    def __init__(self, model: nn.Module, head: nn.Module, distiller: Distiller | None) -> None:
        super().__init__()
        self.model, self.head, self.distiller = model, head, distiller
        self.tap = FeatureTap(model, distiller.tap_layers(model)) if distiller is not None else None

    def forward(self, x: torch.Tensor, labels: torch.Tensor, teacher_feats: list[torch.Tensor],
                batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        emb = self.model(x)
        logits = self.head(emb, labels)
        task = F.cross_entropy(logits.float(), labels)
        if self.distiller is None:
            return task, task.new_zeros(()), logits
        feats = self.tap.features
        return task, self.distiller(feats, teacher_feats, {**batch, "embedding": emb}), logits


@dataclass
class TrainStep:
    """One optimisation step: the frozen teacher's forward on HR (no autograd graph), the student's
    forward and backward on its input, the optimizer step. No host synchronisation: the losses come back
    as device tensors and are read only at log intervals. Benchmarks time exactly this."""

    module: nn.Module  # StudentStep, possibly wrapped in DDP / torch.compile
    teacher: nn.Module | None
    teacher_tap: FeatureTap | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    device_type: str

    def __call__(self, hr_x: torch.Tensor, x: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor):
        autocast = torch.autocast(self.device_type, self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()
        with autocast:
            teacher_feats: list[torch.Tensor] = []
            batch = {"hr": hr_x, "labels": labels, "scale": scale}
            if self.teacher is not None:
                with torch.no_grad():  # not inference_mode: its tensors may not enter the student's graph
                    batch["teacher_embedding"] = self.teacher(hr_x)
                teacher_feats = self.teacher_tap.features
            task_loss, distill_loss, logits = self.module(x, labels, teacher_feats, batch)
            loss = task_loss + distill_loss
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach(), task_loss.detach(), distill_loss.detach(), logits.detach(), labels


@dataclass
class Schedule:
    steps_per_epoch: int
    total_steps: int
    milestones: list[int]

    @classmethod
    def from_config(cls, cfg: RunConfig, n_images: int) -> Schedule:
        t = cfg.train
        spe = n_images // t.batch_size
        if spe == 0:
            raise FskdError(f"{cfg.data.path}: {n_images} training images, fewer than one batch of {t.batch_size}")
        if t.epochs is not None:
            return cls(spe, t.epochs * spe, [m * spe for m in t.milestones])
        return cls(spe, t.steps, list(t.milestones))


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def load_teacher(path: str | Path, student: nn.Module, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """A frozen teacher in eval mode, checked against the student it will guide."""
    ck = load_checkpoint(path, kind="teacher")
    teacher, _ = build_model(ck)
    if getattr(teacher, "input_size", None) != getattr(student, "input_size", None):
        raise FskdError(f"{path}: teacher takes {teacher.input_size}px inputs, the student {student.input_size}px")
    teacher.requires_grad_(False)
    return teacher.to(device).eval(), ck


def feature_shapes(model: nn.Module, layers: list[str]) -> list[torch.Size]:
    """Per-sample shapes of the outputs of ``layers``, from one dummy forward pass."""
    size = model.input_size
    tap = FeatureTap(model, layers)
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
        return [f.shape[1:] for f in tap.features]
    finally:
        tap.remove()
        model.train(was_training)


def train(cfg: RunConfig, out: str | Path, *, kind: str, resume: bool = False, stop_after: int | None = None) -> Path:
    """Train a teacher (``kind='teacher'``: HR, no distiller) or a student; returns the checkpoint path."""
    out = Path(out)
    ckpt_path = out / "checkpoint.pt"
    dist = Dist.from_env()
    device = dist.device(cfg.device)
    if ckpt_path.exists() and not resume:
        raise FskdError(f"{ckpt_path}: exists; pass --resume to continue it, or choose another --out")
    if resume and not ckpt_path.exists():
        raise FskdError(f"{ckpt_path}: nothing to resume")
    seed_everything(cfg.seed, cfg.train.deterministic)

    meta = read_meta(cfg.data.path)
    if meta["task"] not in ("train", "classification"):
        raise FskdError(f"{cfg.data.path}: a {meta['task']} set; training needs a train or classification set")
    student_kind = kind == "student"
    scales = Scale.parse(cfg.distill.scale).factors if student_kind else (1,)
    # with data.degrade=device the LR copies are made from the HR batch on the device, not read from disk
    ds = PairDataset(cfg.data.path, cfg.data.train_split, scales, cache=cfg.data.cache,
                     read_lr=cfg.data.degrade == "disk")
    num_classes = int(ds.labels.max()) + 1
    sched = Schedule.from_config(cfg, len(ds))
    if cfg.train.batch_size % dist.world_size:
        raise FskdError(f"train.batch_size {cfg.train.batch_size} is not divisible by {dist.world_size} processes")

    model = create_model(cfg.model.name, **cfg.model.kwargs).to(device)
    if model.input_size != ds.meta["image_size"] and ds.meta.get("image_size"):
        raise FskdError(f"{cfg.data.path}: {ds.meta['image_size']}px images, but {cfg.model.name} takes {model.input_size}px")
    head = create_head(cfg.model.head, model.embedding_size, num_classes, **cfg.model.head_kwargs).to(device)
    teacher, distiller, teacher_ck, method = None, None, None, None
    method = cfg.distill.method if student_kind else cfg.distill.teacher_method
    if method:
        cls = get_distiller_class(method)
        if cls.needs_teacher or cls.wants_teacher_checkpoint:
            if not student_kind:
                raise FskdError(f"method {method!r} distils from a teacher; use it with `fskd distill`")
            if not cfg.distill.teacher:
                raise FskdError(f"method {method!r} needs --teacher (a checkpoint from `fskd train-teacher`)")
            teacher, teacher_ck = load_teacher(cfg.distill.teacher, model, device)
        extra = {"teacher_checkpoint": teacher_ck} if cls.wants_teacher_checkpoint else {}
        t_shapes = feature_shapes(teacher, cls.tap_layers(teacher)) if teacher is not None else []
        if not cls.needs_teacher:  # only its checkpoint is used (QualNet's decoder): no teacher forward
            teacher = None
        weight, options = ((cfg.distill.weight, cfg.distill.options) if student_kind
                           else (cfg.distill.teacher_weight, cfg.distill.teacher_options))
        distiller = create_distiller(method, feature_shapes(model, cls.tap_layers(model)), t_shapes,
                                     weight=weight, **options, **extra).to(device)
    # channels_last only on CUDA: on the CPU, torch 2.14's backward of a 1x1 stride-2 convolution (every
    # ResNet shortcut) corrupts memory in channels_last (seen here: "free(): invalid next size")
    channels_last = cfg.train.channels_last and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        teacher = teacher.to(memory_format=torch.channels_last) if teacher is not None else None
    step_module: nn.Module = StudentStep(model, head, distiller).to(device)
    teacher_tap = FeatureTap(teacher, distiller.tap_layers(teacher)) if teacher is not None else None

    params = [p for p in step_module.parameters() if p.requires_grad]
    t = cfg.train
    optimizer = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, sched.milestones, gamma=t.gamma)
    amp_dtype = autocast_dtype(t.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    step = 0
    if resume:
        ck = load_checkpoint(ckpt_path, kind=kind)
        model.load_state_dict(ck["model"])
        head.load_state_dict(ck["head"])
        if distiller is not None:
            distiller.load_state_dict(ck["distiller"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"])
        step = ck["step"]
        if step >= sched.total_steps:
            if dist.main:
                console.print(f"[green]{ckpt_path}: already finished ({step} steps)")
            return ckpt_path

    train_module = step_module
    if dist.world_size > 1:
        train_module = nn.parallel.DistributedDataParallel(step_module, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:
        train_module = torch.compile(train_module)

    end = min(sched.total_steps, stop_after) if stop_after else sched.total_steps
    sampler = PairBatchSampler(len(ds), t.batch_size, end, cfg.seed, scales, cfg.data.flip, start_step=step)
    shard = _Shard(sampler, dist.rank, dist.world_size)
    loader = DataLoader(ds, batch_sampler=shard, collate_fn=_identity, num_workers=cfg.data.workers,
                        pin_memory=device.type == "cuda", persistent_workers=cfg.data.workers > 0)

    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        write_yaml(out / "config.yaml", {"kind": kind, **cfg.to_dict()})
        _truncate_log(out / "log.csv", step)
        console.print(f"[bold]{kind}[/] {out}: {len(ds)} images, {num_classes} classes, scale {'/'.join(map(str, scales))}, "
                      f"global batch {t.batch_size} on {dist.world_size} process(es) ({device}), lr {t.lr}, "
                      f"{sched.total_steps} steps ({sched.steps_per_epoch}/epoch), from step {step}")

    base_payload = {
        "kind": kind, "arch": model.arch, "head_arch": {"name": cfg.model.head, "kwargs": dict(cfg.model.head_kwargs)},
        "num_classes": num_classes, "input_size": model.input_size, "config": cfg.to_dict(),
        "method": method, "scale": cfg.distill.scale if student_kind else "1",
        "teacher": teacher_ck["path"] if teacher_ck else None, "data_fingerprint": fingerprint(cfg.data.path),
        "total_steps": sched.total_steps,
    }

    def save(at: int) -> None:
        if dist.main:
            save_checkpoint(ckpt_path, {
                **base_payload, "step": at, "epoch": at / sched.steps_per_epoch,
                "model": model.state_dict(), "head": head.state_dict(),
                "distiller": distiller.state_dict() if distiller is not None else {},
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "rng": rng_state(), "log_sums": sums.cpu(),
            })
        dist.barrier()

    ckpt_every = t.ckpt_every or sched.steps_per_epoch
    # loss, task loss, distill loss, accuracy and the number of steps summed since the last log row;
    # kept in the checkpoint so a resumed run writes the same log rows as an uninterrupted one
    sums = ck["log_sums"].to(device) if resume else torch.zeros(5, device=device)
    seen, t0, t_log = 0, time.time(), time.time()
    model.train(), head.train()

    run_step = TrainStep(train_module, teacher, teacher_tap, optimizer, scaler, amp_dtype, device.type)
    degrade_on_device = cfg.data.degrade == "device"
    meta_degradation = {k: v for k, v in ds.meta.get("degradation", {}).items() if k in ("interpolation", "antialias")}

    with _progress(dist.main) as progress:
        task = progress.add_task(kind, total=sched.total_steps, completed=step, loss=float("nan"))
        for hr, lr, labels, scale in loader:
            hr_x = to_input(hr, device, channels_last)
            if not student_kind:
                x = hr_x
            elif degrade_on_device:
                x = degrade_batch(hr_x, scale.to(device), **meta_degradation)
            else:
                x = to_input(lr, device, channels_last)
            loss, task_loss, distill_loss, logits, labels = run_step(hr_x, x, labels.to(device, non_blocking=True), scale)
            scheduler.step()
            step += 1
            seen += len(labels)
            sums += torch.stack([loss.float(), task_loss.float(), distill_loss.float(),
                                 (logits.argmax(1) == labels).float().mean(), torch.ones((), device=device)])
            progress.advance(task)
            log_now = step % t.log_every == 0 or step == sched.total_steps
            ckpt_now = step % ckpt_every == 0 or step == end
            if log_now or ckpt_now:
                values = (sums[:4] / sums[4]).tolist()
                if not all(math.isfinite(v) for v in values):
                    kept = f"the last good checkpoint is kept at {ckpt_path}" if ckpt_path.exists() else "no checkpoint was written yet"
                    raise FskdError(f"{out}: the loss became {values[0]} by step {step}; stopped, {kept}")
                if log_now:
                    now = time.time()
                    row = {"step": step, "epoch": f"{step / sched.steps_per_epoch:.3f}", "lr": scheduler.get_last_lr()[0],
                           "loss": f"{values[0]:.6f}", "task_loss": f"{values[1]:.6f}", "distill_loss": f"{values[2]:.6f}",
                           "train_acc": f"{values[3]:.4f}", "images_per_s": f"{seen * dist.world_size / (now - t_log):.1f}",
                           "elapsed_s": f"{now - t0:.1f}"}
                    if dist.main:
                        _append_log(out / "log.csv", row)
                    progress.update(task, loss=values[0])
                    sums.zero_()
                    seen, t_log = 0, now
                if ckpt_now:
                    save(step)
    if teacher_tap is not None:
        teacher_tap.remove()
    return ckpt_path


class _Shard:
    """This process's share of every global batch (all of it in a single-process run)."""

    def __init__(self, sampler: PairBatchSampler, rank: int, world: int) -> None:
        self.sampler, self.rank, self.world = sampler, rank, world

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        for keys in self.sampler:
            yield keys[self.rank::self.world]


def _identity(batch: Any) -> Any:
    return batch


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, disable=not enabled, transient=False)


def _append_log(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)


def _truncate_log(path: Path, step: int) -> None:
    """On resume, drop log rows past the checkpoint's step: they will be written again."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    write_csv(path, rows, LOG_FIELDS)
