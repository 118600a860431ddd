"""A study: a teacher and its students, the images they are compared on, and their block features.

``fskd analyze norms|correlation|attention --ckpt STUDENT`` needs nothing else: a student's checkpoint
records its teacher (``teacher``), its training set (``config.data.path`` and ``eval_split``) and its
scale; options override each. Figures go beside the first student's run (``runs/NAME/analysis/``).
Each student sees LR images made the way it was trained (:class:`~fskd_cli.inference.lowres.LowRes`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.checkpoint import Checkpoint, load_checkpoint
from ..core.device import resolve_device
from ..core.errors import FskdError
from ..core.outputs import check_output_folder
from ..core.runs import RunSetting
from ..core.scale import LR_SCALES, Scale
from ..data.manifest import Row, check_source, read_manifest, read_meta
from ..data.readers.reader import ALIGNED_SIZE
from ..inference.lowres import LowRes, batches
from ..inference.model import ReadyModel, load_model
from ..models.tap import FeatureTap

_LR_NAMES = ", ".join(s.value for s in LR_SCALES[:-1]) + f" or {LR_SCALES[-1].value}"  # 2, 4 or 8


@dataclass(frozen=True)
class Member:
    """A network of the study: its checkpoint and the label its figures and CSV rows carry."""

    label: str
    checkpoint: Checkpoint

    def model(self, device: torch.device) -> ReadyModel:
        """Its backbone, ready on ``device`` (built when a figure needs it: one network in memory at a time)."""
        return load_model(self.checkpoint, device=device)


@dataclass
class Study:
    """Everything an analysis compares; made by :func:`open_study`."""

    teacher: Member
    students: list[Member]
    data: str
    split: str | None
    scale: int
    out: Path
    device: torch.device
    lr_source: str = "degrade"
    notes: tuple[str, ...] = ()  # said before the analysis: an unchecked in-place set, fields an old checkpoint lacks

    def lowres(self, member: Member) -> LowRes:
        """How ``member``'s LR images are made: its own training degradation, or the files on disk."""
        return LowRes.for_run(member.checkpoint.degradation, self.lr_source)

    def rows(self, n: int, seed: int) -> list[Row]:
        """``n`` usable images of the split drawn with ``seed`` (all of them when ``n`` is 0), in manifest order."""
        rows = read_manifest(self.data, split=self.split)
        if not rows:
            raise FskdError(f"{Path(self.data) / 'manifest.csv'}: no usable images in split {self.split!r} (--split)")
        if n and n < len(rows):
            g = torch.Generator().manual_seed(seed)
            rows = [rows[i] for i in sorted(torch.randperm(len(rows), generator=g)[:n].tolist())]
        return rows


def open_study(students: list[Path], *, teacher: Path | None = None, data: str | None = None,
               scale: Scale | None = None, out: Path | None = None, split: str | None = "default",
               device: str = "auto", lr_source: str = "degrade", what: str = "analysis", force: bool = False) -> Study:
    """Load the students and their teacher; fill what was not given from the first student's checkpoint.

    ``split='default'`` is the student's evaluation split (``data.eval_split``) when the set has images in it,
    else every usable image; ``None`` is every usable image.
    """
    if not students:
        raise FskdError("--ckpt: name at least one student checkpoint")
    s_cks = [load_checkpoint(s, kind="student") for s in students]
    first = s_cks[0].config
    data = data or s_cks[0].data
    if not data:
        raise FskdError(f"{s_cks[0].path}: records no training data; give --data")
    notes = check_source(data) + [f"{ck.path}: {note}" for ck in s_cks for note in ck.notes]
    if split == "default":  # the student's eval split when the set has it (a face training set has none: all)
        split = (first.get("data") or {}).get("eval_split")
        split = split if split and read_manifest(data, split=split) else None
    elif not read_manifest(data, split=split):  # before --out is made: a mistyped split leaves nothing behind
        raise FskdError(f"{Path(data) / 'manifest.csv'}: no usable images in split {split!r} (--split)")
    teacher_ck = _teacher(s_cks, teacher)
    for ck in s_cks:  # both see the same images: a teacher of another input size fails in its first layer
        if ck.input_size != teacher_ck.input_size:
            raise FskdError(f"{teacher_ck.path}: the teacher takes {teacher_ck.input_size}px inputs, student {ck.path} "
                            f"{ck.input_size}px; give --teacher the teacher it was distilled from")
    _check_images(data, teacher_ck)
    out = check_output_folder(out or s_cks[0].run_dir / what, force=force)
    return Study(Member("teacher", teacher_ck), _label_students(s_cks), str(data), split,
                 _scale(s_cks, scale), out, resolve_device(device), lr_source, tuple(notes))


def _check_images(data: str | Path, teacher: Checkpoint) -> None:
    """The set's images are of the networks' input size (checked before any output): each image is compared at HR
    and as its LR copy, which a set of native low-resolution crops (no ``image_size``) does not have."""
    meta_file, meta = Path(data) / "meta.yaml", read_meta(data)
    # TinyFace's aligned release is kept "at its own size" like the native crops, but that size is one: 112
    size = meta.get("image_size") or (ALIGNED_SIZE if meta.get("layout") == "aligned" else None)
    if not size:
        raise FskdError(f"{meta_file}: a set of native low-resolution crops of many sizes, with no HR image to compare "
                        "an LR copy with; analyze on a set prepared at a fixed size (e.g. tinyface --layout aligned)")
    if size != teacher.input_size:
        raise FskdError(f"{teacher.path}: takes {teacher.input_size}px inputs, but {data} holds {size}px images; "
                        f"analyze on a set prepared at {teacher.input_size}px")


def _teacher(s_cks: list[Checkpoint], given: Path | None) -> Checkpoint:
    """The teacher named by ``--teacher``, else the one the students were distilled from (one line if none or several)."""
    if given is None:
        named = sorted({ck.teacher for ck in s_cks if ck.teacher})
        if not named:
            raise FskdError(f"{s_cks[0].path}: the students record no teacher (a base student has none); give --teacher")
        if len(named) > 1:
            raise FskdError(f"--ckpt: the students were distilled from different teachers ({', '.join(named)}); "
                            "give --teacher")
        if not Path(named[0]).exists():
            raise FskdError(f"{named[0]}: teacher checkpoint not found (recorded in {s_cks[0].path}); give --teacher")
        given = Path(named[0])
    return load_checkpoint(given, kind="teacher")


def _scale(s_cks: list[Checkpoint], given: Scale | None) -> int:
    """The LR factor the students are shown: ``--scale``, else the one they were all trained at."""
    if given is None:
        trained = {ck.scale for ck in s_cks}
        if len(trained) > 1 or not trained <= set(LR_SCALES):
            names = ", ".join(sorted(s.value for s in trained))
            raise FskdError(f"--scale: the students were trained at {names}; give the LR scale to compare at ({_LR_NAMES})")
        given = trained.pop()
    if given not in LR_SCALES:
        raise FskdError(f"--scale must be {_LR_NAMES}, got {given.value}")
    return given.factors[0]


def _label_students(s_cks: list[Checkpoint]) -> list[Member]:
    """Each student's label: its method, or its run name when two students share a method."""
    methods = [RunSetting.of(ck).method for ck in s_cks]
    return [Member(ck.run if methods.count(method) > 1 else method, ck) for ck, method in zip(s_cks, methods, strict=True)]


def paired_features(study: Study, student: Member, rows: list[Row], batch_size: int = 64
                    ) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor], list[str]]]:
    """Yield per batch: the teacher's block features on HR, the student's on LR, the images' paths."""
    lowres = study.lowres(student)
    ds = lowres.dataset(study.data, rows, study.scale)
    t, s = study.teacher.model(study.device), student.model(study.device)
    t_net, s_net = t.backbone, s.backbone
    t_tap, s_tap = FeatureTap(t_net, t_net.feature_layers), FeatureTap(s_net, s_net.feature_layers)
    try:
        with torch.inference_mode():
            for hr, lr, indices in batches(ds, lowres, study.scale, batch_size, f"features {student.label}"):
                t_net(t.inputs(hr))
                s_net(s.inputs(lr))
                yield ([f.float().cpu() for f in t_tap.features], [f.float().cpu() for f in s_tap.features],
                       [rows[i].path for i in indices])
    finally:
        t_tap.remove()
        s_tap.remove()


def per_image_norms(feats: list[torch.Tensor]) -> list[torch.Tensor]:
    return [f.flatten(1).norm(dim=1) for f in feats]
