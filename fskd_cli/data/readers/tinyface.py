"""TinyFace's test protocol (``Probe``, ``Gallery_Match``, ``Gallery_Distractor``), in either of two layouts.

The identity of a probe or gallery face is the integer before the first ``_`` of its file name;
distractors have none (label -1). TinyFace's faces are native low-resolution images: they get no
synthetic LR copies, and each is written at the size it comes in. Two layouts hold them
(``--layout``; meta.yaml records which as ``layout``):

- ``aligned``: AdaFace's aligned release, ``aligned_pad_0.1_pad_high/`` (MTCNN-aligned to 112 x 112,
  padded by 0.1), which the F-SKD authors' TinyFace evaluation read (``test_tinyface.py --aligned``,
  its default) and the paper's Table 3 used. The images are already 112 x 112 and are used as they are;
  one of another size becomes a manifest row with a status, never a stretched face. The paper recipes
  name this layout.
- ``native``: the original ``Testing_Set/`` crops (about 20 x 16 px, not aligned), kept at their own
  size; evaluation then resizes (stretches) each to the model's input, as the authors' loader did.

``auto`` (the default) takes ``aligned_pad_0.1_pad_high`` if the folder holds it (the paper's choice),
else ``Testing_Set``; a folder holding the three role folders itself is ``aligned`` when its first probe
is 112 x 112, else ``native``.
"""

from __future__ import annotations

from pathlib import Path

from ...core.errors import FskdError
from ..prepare_options import Option
from .images import decode_image, file_loader, list_images, output_names
from .reader import ALIGNED_SIZE, Item, Source, UnreadableImage, register, require_exists

ROLES = {"Probe": "probe", "Gallery_Match": "gallery", "Gallery_Distractor": "distractor"}
FOLDERS = {"aligned": "aligned_pad_0.1_pad_high", "native": "Testing_Set"}  # AdaFace's release, the original
ALIGNMENT = {
    "aligned": "AdaFace's aligned TinyFace release (aligned_pad_0.1_pad_high): MTCNN-aligned to 112 x 112 with "
               "0.1 padding, used as it is",
    "native": "none: TinyFace's native low-resolution crops (Testing_Set), kept at their own size; evaluation "
              "resizes them to the model's input",
}
LAYOUT = Option("layout", str, "auto", "aligned: AdaFace's 112 x 112 release (aligned_pad_0.1_pad_high, the paper's); "
                "native: the original Testing_Set crops; auto: aligned if present, else native.",
                choices=("auto", *FOLDERS))


def testing_set(src: Path, layout: str = "auto") -> tuple[Path, str]:
    """The folder holding the three role folders, and its layout (see the module docstring).

    ``src`` is the TinyFace root (holding ``aligned_pad_0.1_pad_high`` and/or ``Testing_Set``) or one
    of those folders itself.
    """
    require_exists(src, "the TinyFace folder (holding aligned_pad_0.1_pad_high or Testing_Set)")
    wanted = list(FOLDERS) if layout == "auto" else [layout]
    found = [name for name in wanted if (src / FOLDERS[name]).is_dir()]
    root = src / FOLDERS[found[0]] if found else src
    missing = [name for name in ROLES if not (root / name).is_dir()]
    if missing:
        what = {"aligned": "aligned release", "native": "Testing_Set"}.get(found[0] if found else layout,
                                                                          "Testing_Set or aligned release")
        raise FskdError(f"{root}: not a TinyFace {what} (missing {', '.join(missing)})")
    if found:
        return root, found[0]
    return root, layout if layout != "auto" else _layout_of(root)


def _layout_of(root: Path) -> str:
    """``aligned`` if the first readable probe is 112 x 112 (AdaFace's release), else ``native``."""
    for entry in list_images(root / "Probe"):
        try:
            image = decode_image(entry.path, str(entry.path))
        except UnreadableImage:
            continue
        return "aligned" if image.shape[:2] == (ALIGNED_SIZE, ALIGNED_SIZE) else "native"
    return "native"


def _aligned_loader(path: Path):
    """Decode, refusing an image of another size: an aligned face is never stretched into place."""
    def load():
        image = decode_image(path, str(path))
        if image.shape[:2] != (ALIGNED_SIZE, ALIGNED_SIZE):
            raise UnreadableImage(f"{path}: {image.shape[1]} x {image.shape[0]} px; AdaFace's aligned TinyFace "
                                  f"images are {ALIGNED_SIZE} x {ALIGNED_SIZE}")
        return image

    return load


def _identity(path: Path, role: str) -> tuple[str, int, tuple[str, str] | None]:
    if role == "distractor":
        return "", -1, None
    head = path.name.split("_", 1)[0]
    if not head.isdigit():
        return "", -1, ("skipped", f"{path}: the file name does not start with an integer identity")
    return head, int(head), None


@register("tinyface", summary="TinyFace 1:N test set: probe, gallery and distractor roles, from AdaFace's aligned "
          "112 x 112 release (used as it is) or the native low-resolution crops (kept at their size).",
          example="fskd prepare tinyface ~/datasets/tinyface --layout aligned",
          src_help="TinyFace folder holding aligned_pad_0.1_pad_high and/or Testing_Set (or one of them).",
          options=(LAYOUT,))
def read_tinyface(src: Path, kind: str, *, layout: str = "auto") -> Source:
    """Probe, gallery and distractor faces, each with its role, in that order."""
    root, layout = testing_set(src, LAYOUT.check(layout))
    items = []
    for folder, role in ROLES.items():
        entries = list_images(root / folder)
        rels = [f"{folder}/{e.rel}" for e in entries]
        for entry, rel, name in zip(entries, rels, output_names(rels), strict=True):
            identity, label, problem = _identity(entry.path, role)
            load = _aligned_loader(entry.path) if layout == "aligned" else file_loader(entry.path, str(entry.path))
            items.append(Item(source=rel, rel=name, identity=identity, label=label, split="test", role=role, load=load,
                              problem=("unreadable", entry.problem) if entry.problem else problem))
    if not items:
        raise FskdError(f"{root}: Probe, Gallery_Match and Gallery_Distractor hold no images")
    # "native" faces for prepare in both layouts: each image is written at its own size, with no LR copies
    return Source(task="identification", faces="native", items=items,
                  meta={"native_resolution": True, "layout": layout, "alignment": ALIGNMENT[layout]})
