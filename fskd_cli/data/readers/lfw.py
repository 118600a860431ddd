"""LFW: the View-2 ``pairs.txt`` protocol over an LFW image tree, or insightface's ``lfw.bin``.

``pairs.txt`` starts with ``folds<TAB>n``; each fold is then ``n`` same-person lines ``name i j`` and
``n`` different-person lines ``name1 i name2 j``; image ``i`` of ``name`` is ``name/name_%04d.jpg``.
The pairs keep that order, so the folds stay consecutive blocks of equal size.
The raw LFW photos (250 x 250, face in the middle) are detected and aligned like any other photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...core.errors import FskdError
from ...core.guard import safe_name
from ..prepare_options import Option
from .binpairs import read_bin
from .images import file_loader
from .reader import Item, Source, label_map, register, require_exists


@dataclass(frozen=True)
class LfwPairs:
    """The pairs of an LFW protocol file as relative image paths, and how many folds they form."""

    folds: int
    pairs: list[tuple[str, str, int]]


def lfw_image(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def read_lfw_pairs(path: Path) -> LfwPairs:
    """Parse ``pairs.txt`` (View 2: ``10 300``; View 1's ``pairsDevTrain.txt``: one number, one fold)."""
    require_exists(path, "the LFW pairs.txt")
    lines = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
    folds, n = _header(path, lines[0] if lines else [])
    body = lines[1:]
    if len(body) < 2 * folds * n:
        raise FskdError(f"{path}: the header promises {2 * folds * n} pairs, the file has {len(body)} lines")
    pairs = []
    for i, tokens in enumerate(body[: 2 * folds * n]):
        same = (i % (2 * n)) < n
        pairs.append(_pair(path, i + 2, tokens, same))
    return LfwPairs(folds, pairs)


def _header(path: Path, tokens: list[str]) -> tuple[int, int]:
    try:
        numbers = [int(t) for t in tokens]
    except ValueError:
        numbers = []
    if len(numbers) == 2 and min(numbers) > 0:
        return numbers[0], numbers[1]
    if len(numbers) == 1 and numbers[0] > 0:
        return 1, numbers[0]
    raise FskdError(f"{path}, line 1: expected 'folds<TAB>pairs per half' (e.g. '10 300'), got {' '.join(tokens)!r}")


def _pair(path: Path, line: int, tokens: list[str], same: bool) -> tuple[str, str, int]:
    try:
        where = f"{path}, line {line}"
        if same and len(tokens) == 3:
            name = safe_name(tokens[0], where)
            return lfw_image(name, tokens[1]), lfw_image(name, tokens[2]), 1
        if not same and len(tokens) == 4:
            return lfw_image(safe_name(tokens[0], where), tokens[1]), lfw_image(safe_name(tokens[2], where), tokens[3]), 0
    except ValueError:
        pass
    want = "'name i j' (same person)" if same else "'name1 i name2 j' (different people)"
    raise FskdError(f"{path}, line {line}: expected {want}, got {' '.join(tokens)!r}")


@register("lfw", summary="LFW verification pairs: from insightface's lfw.bin, or an LFW image tree with "
          "pairs.txt (detected, aligned).", example="fskd prepare lfw ~/datasets/lfw --pairs ~/datasets/pairs.txt",
          src_help="lfw.bin (or its folder), or the LFW image tree name/name_0001.jpg.",
          options=(Option("pairs", Path, None, "View-2 pairs.txt for an image tree (default: SRC/pairs.txt or "
                          "beside SRC)."),), detects=True)
def read_lfw(src: Path, kind: str, *, pairs: Path | None = None) -> Source:
    """``lfw.bin`` (a file, or a folder holding one) or an LFW image tree with its ``pairs.txt``."""
    require_exists(src, "lfw.bin or an LFW image tree (name/name_0001.jpg)")
    if src.is_file() or (src / "lfw.bin").exists():
        if pairs is not None:
            raise FskdError(f"{src}: lfw.bin holds its own pairs; --pairs is for an LFW image tree")
        return read_bin(src, kind)
    return read_lfw_tree(src, pairs or _find_pairs(src))


def _find_pairs(src: Path) -> Path:
    for candidate in (src / "pairs.txt", src.parent / "pairs.txt"):
        if candidate.exists():
            return candidate
    raise FskdError(f"{src}: no pairs.txt in it or beside it; pass --pairs PATH/pairs.txt")


def read_lfw_tree(src: Path, pairs_txt: Path) -> Source:
    """The images the protocol uses (each once, in order of first use), and its pairs."""
    protocol = read_lfw_pairs(pairs_txt)
    rels = list(dict.fromkeys(p for left, right, _ in protocol.pairs for p in (left, right)))
    if not any((src / rel).exists() for rel in rels):
        raise FskdError(f"{src}: none of the images of {pairs_txt.name} is there (e.g. {rels[0]}); "
                        "is it the LFW image tree (name/name_0001.jpg)?")
    identities = [rel.split("/")[0] for rel in rels]
    labels = label_map(identities)
    items = [Item(source=rel, rel=rel.removesuffix(".jpg"), identity=ident, label=labels[ident], split="test",
                  load=file_loader(src / rel, str(src / rel)))
             for rel, ident in zip(rels, identities, strict=True)]
    return Source(task="verification", faces="detect", items=items, pairs=protocol.pairs,
                  meta={"folds": protocol.folds, "pairs_file": str(pairs_txt)})
