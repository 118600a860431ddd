"""TinyFace's test protocol (``Testing_Set/Probe``, ``Gallery_Match``, ``Gallery_Distractor``).

The identity of a probe or gallery face is the integer before the first ``_`` of its file name;
distractors have none (label -1). These are native low-resolution faces (about 20 x 16 px): they
are kept at their own size in ``images/hr`` and get no synthetic LR copies.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import FskdError
from .base import Item, Source, file_loader, list_images, output_names, reader, require_exists

ROLES = {"Probe": "probe", "Gallery_Match": "gallery", "Gallery_Distractor": "distractor"}


def testing_set(src: Path) -> Path:
    """``src`` is the TinyFace root (holding ``Testing_Set``) or ``Testing_Set`` itself."""
    require_exists(src, "the TinyFace folder (holding Testing_Set)")
    root = src / "Testing_Set" if (src / "Testing_Set").is_dir() else src
    missing = [name for name in ROLES if not (root / name).is_dir()]
    if missing:
        raise FskdError(f"{root}: not a TinyFace Testing_Set (missing {', '.join(missing)})")
    return root


def _identity(path: Path, role: str) -> tuple[str, int, tuple[str, str] | None]:
    if role == "distractor":
        return "", -1, None
    head = path.name.split("_", 1)[0]
    if not head.isdigit():
        return "", -1, ("skipped", f"{path}: the file name does not start with an integer identity")
    return head, int(head), None


@reader("tinyface")
def read_tinyface(src: Path, kind: str) -> Source:
    """Probe, gallery and distractor faces, each with its role, in that order."""
    root = testing_set(src)
    items = []
    for folder, role in ROLES.items():
        files = list_images(root / folder)
        rels = [f"{folder}/{p.relative_to(root / folder).as_posix()}" for p in files]
        for path, rel, name in zip(files, rels, output_names(rels)):
            identity, label, problem = _identity(path, role)
            items.append(Item(source=rel, rel=name, identity=identity, label=label, split="test", role=role,
                              load=file_loader(path, str(path)), problem=problem))
    if not items:
        raise FskdError(f"{root}: Probe, Gallery_Match and Gallery_Distractor hold no images")
    return Source(task="identification", faces="native", items=items, meta={"native_resolution": True})
