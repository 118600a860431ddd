"""Raw photos in identity folders (``person/*.jpg``), e.g. CASIA-WebFace as downloaded.

The identity of a photo is its first folder under SRC, or, for flat folders such as the Yale faces
(``subject01.glasses``), the first group of ``identity_regex`` matched against its relative path.
Files are chosen by content, not suffix (Yale files have none); documentation files are ignored.
An optional pair list (CSV ``left,right,same`` of paths relative to SRC) makes it a 1:1 set.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ...core.errors import FskdError
from ..prepare_options import Option
from .images import Listed, file_loader, list_images, output_names
from .reader import Item, Source, label_map, register, require_exists

PAIRS = Option("pairs", Path, None, "Pair list: CSV left,right,same of paths relative to SRC (makes a 1:1 test set).")
FOLDS = 10  # `fskd eval` splits the pairs into this many consecutive folds
IDENTITY_REGEX = Option("identity_regex", str, None, "Identity = first group of this regex on the relative path "
                        "(for flat folders), e.g. '^(subject\\d+)'.")


@register("folder", summary="Raw photos in identity folders: MTCNN, five landmarks, similarity warp to the 112x112 "
          "ArcFace template.", example="fskd prepare folder ~/photos --out data/myfaces --pairs ~/photos/pairs.csv",
          src_help="Folder of identity folders (person/*.jpg).", options=(PAIRS, IDENTITY_REGEX), detects=True)
def read_folder(src: Path, kind: str, *, pairs: Path | None = None, identity_regex: str | None = None) -> Source:
    """Every candidate image under ``src``; photos outside any identity become ``skipped`` rows."""
    require_exists(src, "a folder of identity folders")
    if not src.is_dir():
        raise FskdError(f"{src}: not a folder; `{kind}` reads a folder of identity folders (person/*.jpg)")
    entries = list_images(src)
    if not entries:
        raise FskdError(f"{src}: no image files found; `{kind}` reads a folder of identity folders (person/*.jpg)")
    rels = [e.rel for e in entries]
    pattern = _compile(identity_regex)
    identities = [_identity(rel, pattern) for rel in rels]
    if not any(identities):
        hint = f"no file matches --identity-regex {identity_regex!r}" if identity_regex else (
            "its images lie directly in it, not in identity folders; pass --identity-regex")
        raise FskdError(f"{src}: {hint}")
    labels = label_map([i for i in identities if i])
    split = "train" if pairs is None else "test"
    items = [Item(source=e.rel, rel=name, identity=ident, label=labels.get(ident, -1), split=split,
                  load=file_loader(e.path, str(e.path)), problem=_problem(e, ident))
             for e, name, ident in zip(entries, output_names(rels), identities, strict=True)]
    pair_list = None if pairs is None else read_pair_csv(pairs, dict(zip(rels, identities, strict=True)))
    return Source(task="train" if pairs is None else "verification", faces="detect", items=items, pairs=pair_list)


register("casia", summary="CASIA-WebFace raw photos (one folder per identity), detected and aligned to 112x112 "
         "like `folder`, as a training set.", example="fskd prepare casia ~/datasets/CASIA-WebFace",
         src_help="CASIA-WebFace as downloaded (one folder per identity).", detects=True)(read_folder)


def _problem(entry: Listed, identity: str) -> tuple[str, str] | None:
    if entry.problem is not None:
        return "unreadable", entry.problem
    return None if identity else ("skipped", f"{entry.path}: not inside an identity folder")


def _compile(identity_regex: str | None) -> re.Pattern[str] | None:
    try:
        return None if identity_regex is None else re.compile(identity_regex)
    except re.error as e:
        raise FskdError(f"--identity-regex {identity_regex!r}: not a valid regular expression ({e})") from None


def _identity(rel: str, pattern: re.Pattern[str] | None) -> str:
    """The first folder of ``rel``, or the regex's first group (whole match if it has no group)."""
    if pattern is None:
        parts = rel.split("/")
        return parts[0] if len(parts) > 1 else ""
    match = pattern.search(rel)
    if match is None:
        return ""
    return match.group(1) if match.groups() else match.group(0)


def read_pair_csv(path: Path, known: dict[str, str]) -> list[tuple[str, str, int]]:
    """A pair list ``left,right,same`` (paths relative to SRC, same 0/1), checked line by line against ``known``
    (each image's identity) and as a whole against what `fskd eval` needs (10 equal folds, both kinds of pair), so
    a hand-edited list is refused before a single photo is aligned, not by eval after all of them were."""
    require_exists(path, "a pair list (CSV with columns left,right,same)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: a spreadsheet's UTF-8 starts with a BOM
            reader = csv.DictReader(f)
            fieldnames, records = reader.fieldnames, list(reader)
    except (UnicodeDecodeError, csv.Error) as e:
        raise FskdError(f"{path}: not a UTF-8 CSV file ({type(e).__name__}: {e}); save it as CSV UTF-8") from None
    if fieldnames is None or not {"left", "right", "same"} <= set(fieldnames):
        raise FskdError(f"{path}: a pair list needs the header left,right,same")
    out = []
    for line, r in enumerate(records, start=2):
        if None in (r["left"], r["right"], r["same"]):  # a short line: DictReader fills the missing fields with None
            raise FskdError(f"{path}, line {line}: a pair needs left, right and same")
        if r["same"] not in ("0", "1"):
            raise FskdError(f"{path}, line {line}: same must be 0 or 1, got {r['same']!r}")
        for side in (r["left"], r["right"]):
            if side.startswith("/") or ".." in side.split("/"):
                raise FskdError(f"{path}, line {line}: {side!r} leads outside the source folder")
            if side not in known:
                raise FskdError(f"{path}, line {line}: {side!r} is not an image under the source folder")
        if r["left"] == r["right"]:  # an image against itself: a sure match that only inflates the accuracy
            raise FskdError(f"{path}, line {line}: pairs {r['left']!r} with itself")
        _check_identities(path, line, r["left"], r["right"], int(r["same"]), known)
        out.append((r["left"], r["right"], int(r["same"])))
    if not out:
        raise FskdError(f"{path}: the pair list has no pairs")
    if len(out) % FOLDS:
        raise FskdError(f"{path}: {len(out)} pairs cannot be split into {FOLDS} equal consecutive folds, as "
                        f"`fskd eval` needs; give a multiple of {FOLDS}")
    if len({same for _, _, same in out}) < 2:
        raise FskdError(f"{path}: all pairs are {'same' if out[0][2] else 'different'}-identity; a verification "
                        "set needs both kinds")
    return out


def _check_identities(path: Path, line: int, left: str, right: str, same: int, known: dict[str, str]) -> None:
    """A pair whose ``same`` contradicts its photos' identity folders is a slip in the list (or the folders)."""
    a, b = known[left], known[right]
    if a and b and (a == b) != bool(same):
        what = f"both are {a!r}" if a == b else f"they are {a!r} and {b!r}"
        raise FskdError(f"{path}, line {line}: same is {same} for {left!r} and {right!r}, but {what}")
