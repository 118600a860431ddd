"""A training run, built and checked before any image is read, and restored from its checkpoint.

:func:`build_run` reads only meta.yaml and the manifest (for the number of images and classes) and the
teacher's checkpoint, and builds everything that trains: model, head, distiller, optimizer, schedule. Every
mistake a recipe or command line can make (a method that needs a teacher, a teacher whose features do not
fit, a batch that does not split over the processes, the wrong image size) fails here, in one line.
:func:`restore` loads a checkpoint into a built run for ``--resume``, refusing a changed recipe.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from torch import nn

from ..core.checkpoint import Checkpoint, load_checkpoint, rng_state, set_rng_state
from ..core.config import RESUME_SAFE_KEYS, RunConfig, resume_changes
from ..core.errors import FskdError
from ..core.lock import check_free
from ..core.preprocess import Preprocess
from ..core.scale import Scale
from ..data.manifest import Row, check_source, fingerprint, read_manifest, read_meta
from ..distill import Distiller, create_distiller, get_distiller_class
from ..inference.model import load_weights
from ..models import create_model
from ..models.heads import create_head
from ..models.tap import FeatureTap
from .distributed import Dist
from .meters import Meters
from .step import RecognitionModule, autocast_dtype
from .teacher import check_fit, feature_shapes, load_teacher

METERS = ("loss", "task_loss", "distill_loss", "train_acc")
console = Console(stderr=True)


@dataclass
class Schedule:
    """Run length and learning-rate milestones in steps (a recipe may give them in epochs)."""

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


@dataclass
class Distillation:
    """What a run distils: the method, its loss module, and the frozen teacher with its checkpoint."""

    method: str | None = None
    distiller: Distiller | None = None
    teacher: nn.Module | None = None  # None when the method needs no teacher forward
    teacher_ck: Checkpoint | None = None
    teacher_tap: FeatureTap | None = None


@dataclass
class Run:
    """Everything a training run is made of; ``step`` and ``meters`` are where it stands."""

    cfg: RunConfig
    out: Path
    kind: str
    dist: Dist
    device: torch.device
    meta: dict[str, Any]
    rows: list[Row]  # the training split's usable manifest rows
    num_classes: int
    scales: tuple[int, ...]
    schedule: Schedule
    model: nn.Module
    head: nn.Module
    distill: Distillation
    preprocess: Preprocess
    module: RecognitionModule
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    channels_last: bool
    step: int = 0
    meters: Meters = field(init=False)
    data_fingerprint: str = field(init=False)
    teacher_fingerprint: str | None = field(init=False)

    def __post_init__(self) -> None:
        self.meters = Meters(METERS, self.device)
        self.data_fingerprint = fingerprint(self.cfg.data.path)
        teacher = self.distill.teacher_ck
        self.teacher_fingerprint = weights_fingerprint(teacher.weights) if teacher is not None else None

    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint payload at the current step: enough to rebuild the model and to resume exactly."""
        d, cfg = self.distill, self.cfg
        return {
            "kind": self.kind, "arch": self.model.arch, "num_classes": self.num_classes,
            "head_arch": {"name": cfg.model.head, "kwargs": dict(cfg.model.head_kwargs)},
            "input_size": self.model.input_size, "embedding_size": self.model.embedding_size, "config": cfg.to_dict(),
            "preprocess": self.preprocess.to_dict(), "degradation": self.degradation(), "variant": self.variant(),
            "method": d.method, "scale": (cfg.distill.scale if self.kind == "student" else Scale.x1).value,
            "teacher": str(d.teacher_ck.path) if d.teacher_ck else None, "data_fingerprint": self.data_fingerprint,
            "total_steps": self.schedule.total_steps, "step": self.step, "epoch": self.step / self.schedule.steps_per_epoch,
            "model": self.model.state_dict(), "head": self.head.state_dict(),
            "distiller": d.distiller.state_dict() if d.distiller is not None else {},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(), "meters": self.meters.state_dict(),
            "teacher_weights": self.teacher_fingerprint,
        }


    def degradation(self) -> dict[str, Any]:
        """How this run's LR images are made (the training set's degradation) and the factors it trains on."""
        made = self.meta.get("degradation") or {}
        return {"interpolation": made.get("interpolation", "bilinear"), "antialias": bool(made.get("antialias", False)),
                "scales": list(self.scales)}

    def variant(self) -> str:
        """The network family the paper's tables group by: cbam, dec (a QualNet-decoder teacher or its student), plain."""
        if self.cfg.model.kwargs.get("cbam"):
            return "cbam"
        if self.kind == "teacher":
            return "dec" if self.cfg.distill.teacher_method else "plain"
        teacher = self.distill.teacher_ck
        return teacher.variant if teacher is not None and teacher.variant == "dec" else "plain"


def weights_fingerprint(weights: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names and values: a student records its teacher's, so that ``--resume`` after the
    teacher's folder was retrained (``--force``) or replaced is refused instead of mixing two teachers in one run."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        tensor = weights[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(weights[name].shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def default_out(cfg: RunConfig, kind: str) -> Path:
    """Where a run goes when no ``--out`` is given: ``runs/NAME-teacher-sSEED`` or ``runs/NAME-METHOD-xSCALE-sSEED``."""
    if kind == "teacher":
        return Path("runs") / f"{cfg.name}-teacher-s{cfg.seed}"
    return Path("runs") / f"{cfg.name}-{cfg.distill.method}-{cfg.distill.scale.label}-s{cfg.seed}"


def check_weight_given(cfg: RunConfig, option: str) -> None:
    """A weight given for a method without a distillation term would change nothing: one line, not a silent no-op."""
    if not get_distiller_class(cfg.distill.method).weighted:
        raise FskdError(f"{option}: method {cfg.distill.method} has no distillation term to weight; leave {option} out")


def needs_teacher(cfg: RunConfig) -> bool:
    """Whether a student run of this recipe's method reads a teacher checkpoint."""
    cls = get_distiller_class(cfg.distill.method)
    return cls.needs_teacher or cls.wants_teacher_checkpoint


def default_teacher(cfg: RunConfig, make_it: str) -> Path:
    """The checkpoint ``fskd train-teacher`` writes by default for the same recipe and seed; FskdError naming
    the path and ``make_it`` (the command that writes it) when it is not there."""
    path = default_out(cfg, "teacher") / "checkpoint.pt"
    if not path.is_file():
        raise FskdError(f"{path}: no teacher here; make it with `{make_it}`, or give --teacher")
    return path


def build_run(cfg: RunConfig, out: str | Path, kind: str, *, resume: bool = False, force: bool = False) -> Run:
    """Build and check a teacher (``kind='teacher'``: HR, no distiller unless an auxiliary one) or a student run."""
    out = Path(out)
    _check_out(out, resume, force)
    _check_inputs_apart(cfg, out, kind)
    method = cfg.distill.method if kind == "student" else cfg.distill.teacher_method
    if method:
        get_distiller_class(method)  # an unknown method fails before anything is read
    dist = Dist.from_env()
    device = dist.device(cfg.device)
    seed_everything(cfg.seed, cfg.train.deterministic)
    meta, rows, num_classes = _training_data(cfg, dist.main)
    scales = cfg.distill.scale.factors if kind == "student" else (1,)
    schedule = Schedule.from_config(cfg, len(rows))
    if cfg.train.batch_size % dist.world_size:
        raise FskdError(f"train.batch_size {cfg.train.batch_size} is not divisible by {dist.world_size} processes")
    model = create_model(cfg.model.name, **cfg.model.kwargs).to(device)
    if meta.get("image_size") and model.input_size != meta["image_size"]:
        raise FskdError(f"{cfg.data.path}: {meta['image_size']}px images, but {cfg.model.name} takes {model.input_size}px")
    head = create_head(cfg.model.head, model.embedding_size, num_classes, **cfg.model.head_kwargs).to(device)
    distill = _distillation(cfg, kind, model, head, device)
    # channels_last only on CUDA: on the CPU, torch 2.14's backward of a 1x1 stride-2 convolution (every
    # ResNet shortcut) corrupts memory in channels_last (seen here: "free(): invalid next size")
    channels_last = cfg.train.channels_last and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        distill.teacher = distill.teacher.to(memory_format=torch.channels_last) if distill.teacher is not None else None
    module = RecognitionModule(model, head, distill.distiller).to(device)
    if distill.teacher is not None:
        distill.teacher_tap = FeatureTap(distill.teacher, distill.distiller.tap_layers(distill.teacher))
    optimizer, scheduler = _optimizer(cfg, module, schedule)
    amp_dtype = autocast_dtype(cfg.train.amp, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    # a student works in its teacher's input convention (an imported BGR teacher makes a BGR student);
    # a teacher, or a student without one, in the recipe's model.preprocess
    teacher_ck = distill.teacher_ck
    preprocess = teacher_ck.preprocess if teacher_ck else Preprocess.from_dict(cfg.model.preprocess)
    if teacher_ck and cfg.model.preprocess and Preprocess.from_dict(cfg.model.preprocess) != preprocess:
        raise FskdError(f"model.preprocess {cfg.model.preprocess} differs from the teacher's input convention "
                        f"{preprocess.to_dict()} ({teacher_ck.path}); a student takes its teacher's")
    return Run(cfg, out, kind, dist, device, meta, rows, num_classes, scales, schedule, model, head, distill, preprocess,
               module, optimizer, scheduler, scaler, amp_dtype, channels_last)


#: the files a run writes into its folder: something else of those names there (a folder, a FIFO) would make
#: the run fail at its first write, after the work; ``--force`` replaces files, never a folder
RUN_FILES = ("checkpoint.pt", "log.csv", "config.yaml")


def _check_out(out: Path, resume: bool, force: bool) -> None:
    """``--out`` as this run may use it: a folder, not in use by a live fskd run (whatever ``force`` says),
    where the run's own files can be written."""
    if out.exists() and not out.is_dir():
        raise FskdError(f"{out}: is a file, not a folder; give --out a folder")
    for name in RUN_FILES:
        path = out / name
        if path.exists() and not path.is_file():
            what = "a folder" if path.is_dir() else "a special file"
            raise FskdError(f"{path}: cannot write ({what} is there, not a regular file); move it away or choose "
                            "another --out")
    check_free(out)
    check_checkpoint(out, resume, force)


def _check_inputs_apart(cfg: RunConfig, out: Path, kind: str) -> None:
    """``--out`` may not be, or lie inside, the run's training set, nor hold its teacher's checkpoint: the run
    would write its files and marker among its own inputs (``--force`` included: the data folder would become a
    run folder, the teacher's checkpoint would be replaced by the student it is guiding)."""
    here = out.resolve()
    data = Path(cfg.data.path).resolve()
    if here == data or here.is_relative_to(data):
        raise FskdError(f"{out}: inside the training set {cfg.data.path} (data.path); a run goes in a folder of its "
                        "own: choose another --out")
    if kind == "student" and cfg.distill.teacher:
        teacher = Path(cfg.distill.teacher)
        teacher = teacher / "checkpoint.pt" if teacher.is_dir() else teacher
        if teacher.resolve() == (here / "checkpoint.pt"):
            raise FskdError(f"{out}: holds the teacher ({cfg.distill.teacher}); the student's checkpoint would replace "
                            "it: choose another --out")


def check_checkpoint(out: Path, resume: bool, force: bool) -> None:
    """A checkpoint in ``out`` to ``resume``, or none unless ``force``: checked before the build, and again once
    the folder is held (a run that ended in the meantime has left its checkpoint there)."""
    ckpt = out / "checkpoint.pt"
    if resume and not ckpt.exists():
        raise FskdError(f"{ckpt}: nothing to resume")
    if ckpt.exists() and not resume and not force:
        raise FskdError(f"{ckpt}: exists; pass --resume to continue it, --force to start over, or choose another --out")


def _training_data(cfg: RunConfig, main: bool) -> tuple[dict[str, Any], list[Row], int]:
    """meta.yaml and the training split's manifest rows (no image is read; an in-place set's records are checked
    against their fingerprint on every process, each of which may see other files; ``main`` prints the notes)."""
    meta = read_meta(cfg.data.path)
    if meta["task"] not in ("train", "classification"):
        raise FskdError(f"{cfg.data.path}: a {meta['task']} set; training needs a train or classification set")
    for note in check_source(cfg.data.path):
        if main:
            console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    rows = read_manifest(cfg.data.path, split=cfg.data.train_split)
    if not rows:
        raise FskdError(f"{Path(cfg.data.path) / 'manifest.csv'}: no usable images in split {cfg.data.train_split!r}")
    classes = len({r.label for r in rows})
    if classes < 2:  # one class: the loss is 0 from the first step and the run would learn nothing
        raise FskdError(f"{Path(cfg.data.path) / 'manifest.csv'}: split {cfg.data.train_split!r} has {classes} class "
                        "(identity); training needs at least 2")
    return meta, rows, max(r.label for r in rows) + 1


def _distillation(cfg: RunConfig, kind: str, model: nn.Module, head: nn.Module, device: torch.device) -> Distillation:
    """The method (a student's, or a teacher run's auxiliary loss), its teacher, checked to fit the student."""
    student = kind == "student"
    method = cfg.distill.method if student else cfg.distill.teacher_method
    if not method:
        return Distillation()
    cls = get_distiller_class(method)
    teacher = teacher_ck = None
    if cls.needs_teacher or cls.wants_teacher_checkpoint:
        if not student:
            raise FskdError(f"method {method!r} distils from a teacher; use it with `fskd distill`")
        if not cfg.distill.teacher:
            raise FskdError(f"method {method!r} needs --teacher (a checkpoint from `fskd train-teacher`)")
        teacher, teacher_ck = load_teacher(cfg.distill.teacher, model, device)
    shapes = (feature_shapes(model, cls.tap_layers(model)),
              feature_shapes(teacher, cls.tap_layers(teacher)) if teacher is not None else [])
    weight, options = ((cfg.distill.weight, cfg.distill.options) if student
                       else (cfg.distill.teacher_weight, cfg.distill.teacher_options))
    extra = {"teacher_checkpoint": teacher_ck} if cls.wants_teacher_checkpoint else {}
    distiller = create_distiller(method, *shapes, weight=weight, **options, **extra).to(device)
    if cls.needs_teacher:
        check_fit(distiller, model, teacher, shapes, teacher_ck)
    else:  # only its checkpoint is used (QualNet's decoder): no teacher forward
        teacher = None
    check_input_size = getattr(distiller, "check_input_size", None)
    if check_input_size is not None:  # e.g. a decoder must give back images of the input's size
        check_input_size(model.input_size)
    init_student = getattr(distiller, "init_student", None)
    if init_student is not None:  # e.g. start the student from the teacher's weights (before the optimizer)
        init_student(model, head, teacher_ck)
    return Distillation(method, distiller, teacher, teacher_ck)


def _optimizer(cfg: RunConfig, module: nn.Module, schedule: Schedule):
    """SGD over what trains (frozen parts excluded), stepped down at the milestones."""
    t = cfg.train
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay)
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, schedule.milestones, gamma=t.gamma)


def restore(run: Run) -> None:
    """Load the run's checkpoint for ``--resume``: weights, optimizer, schedule, RNG states, step and meters.

    A recipe changed since the checkpoint is refused (one line naming the key), except for the keys in
    ``RESUME_SAFE_KEYS``, whose changes are logged.
    """
    ck = load_checkpoint(run.ckpt_path, kind=run.kind)
    refused, safe = resume_changes(ck.config, run.cfg)
    if refused:  # every changed key: one change can move another (train.steps moves the milestones)
        changes = "; ".join(f"{key} was {old!r}, now {new!r}" for key, old, new in refused[:4])
        more = f" (and {len(refused) - 4} more)" if len(refused) > 4 else ""
        raise FskdError(f"{run.ckpt_path}: --resume with a changed recipe: {changes}{more}; only "
                        f"{', '.join(RESUME_SAFE_KEYS)} may change (use the same recipe, another --out, or --force)")
    _check_same_teacher(run, ck)
    for key, old, new in safe:
        if run.dist.main:
            console.print(f"resume: {key} changed from {old!r} to {new!r}")
    load_weights(run.model, ck.weights, ck.path, "model")
    load_weights(run.head, ck.head_weights, ck.path, "head")
    if run.distill.distiller is not None:
        load_weights(run.distill.distiller, ck.distiller_weights, ck.path, "distiller")
    for part, state in (("optimizer", run.optimizer), ("scheduler", run.scheduler), ("scaler", run.scaler)):
        state.load_state_dict(ck.training_state(part))
    set_rng_state(ck.training_state("rng"))
    try:
        meters = ck.training_state("meters")
    except FskdError:  # checkpoints written before the meters had names hold the same sums, in order, as "log_sums"
        meters = {"names": METERS, "sums": ck.training_state("log_sums")}
    run.meters.load_state_dict(meters)
    run.step = ck.step


def _check_same_teacher(run: Run, ck: Checkpoint) -> None:
    """The teacher at the recorded path must hold the weights the run started with (a checkpoint of an earlier
    fskd records none: not checked)."""
    try:
        recorded = ck.training_state("teacher_weights")
    except FskdError:
        return
    if recorded is not None and recorded != run.teacher_fingerprint and run.distill.teacher_ck is not None:
        raise FskdError(f"{run.ckpt_path}: --resume with another teacher: {run.distill.teacher_ck.path} holds other "
                        "weights than the teacher this run started from (retrained or replaced since); resume with "
                        "that teacher, or start over with --force")


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
