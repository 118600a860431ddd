"""``fskd embed``, ``fskd verify``, ``fskd export`` and ``fskd import-teacher``: using a model outside the
benchmarks. The logic is in :mod:`fskd_cli.use`; these functions parse options and print results. The formats and
architectures offered are the stage's own (:mod:`fskd_cli.use.formats`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ..core.device import DEVICE_HELP
from ..core.errors import FskdError
from ..core.scale import SINGLE_SCALES, Scale
from ..data.prepare_options import ON_NO_FACE
from ..use.formats import EXPORT_FORMATS, TEACHER_ARCHS, TEACHER_FORMATS, check_export_out
from .choices import one_of

console = Console(stderr=True)

Ckpt = Annotated[Path, typer.Option(help="A run folder or its checkpoint.pt (teacher, student or imported).")]
Device = Annotated[str, typer.Option(help=DEVICE_HELP)]
ScaleOpt = Annotated[one_of(SINGLE_SCALES) | None, typer.Option(
    help="Degrade the photos first, as the run's LR images were made: what a camera this many times farther "
         "away would give. Refused for --aligned crops smaller than the input: they already are low-resolution.")]
ALIGNED_HELP = (
    "The photos already are aligned face crops (as `prepare` writes them, a .bin set's, or native low-resolution "
    "crops such as TinyFace's), of any size: no detection. A crop of another size than the model's input "
    "(112 x 112) is resized to it bilinearly, stretched if not square, exactly as `fskd eval` resizes native-size "
    "sets, so both give the same embeddings; the output records each resize.")
NoFaceOpt = Annotated[one_of(ON_NO_FACE) | None, typer.Option(
    help="A photo where no face is found (a small or tight one): skip it (status no_face or too_small, default) or "
         "use its central crop scaled to the face template (status center), as `prepare --on-no-face` does. "
         "Not with --aligned.")]


def _on_no_face(choice: str | None, aligned: bool) -> str:
    """The --on-no-face value; given with --aligned it would be ignored, so it is refused."""
    if choice is not None and aligned:
        raise FskdError("--on-no-face: applies to photos that are detected and aligned here; --aligned crops are "
                        "used whole")
    return choice or "skip"


def embed_command(
    sources: Annotated[list[Path], typer.Argument(metavar="SRC...", help="Photo files or folders of them.")],
    ckpt: Ckpt,
    out: Annotated[Path, typer.Option(help=(
        "Output file: .npz (embeddings, paths, status, reason, resized_from, input) or .csv (path, status, reason, "
        "resized_from, path_encoding, e0...). Checked before any photo is read. File names that are not UTF-8 are "
        "kept: as Python's str in the .npz; in the .csv with their non-ASCII bytes and % percent-encoded and "
        "path_encoding 'percent' (other names as they are). read_embeddings() gives the original names back."))]
    = Path("embeddings.npz"),
    scale: ScaleOpt = None,
    aligned: Annotated[bool, typer.Option("--aligned", help=ALIGNED_HELP)] = False,
    on_no_face: NoFaceOpt = None,
    flip: Annotated[bool, typer.Option(help="Add the mirror image's embedding, as eval does.")] = True,
    device: Device = "auto",
    batch_size: Annotated[int, typer.Option(help="Photos per batch.", min=1)] = 32,
) -> None:
    """Embed photos: detect and align each face as `prepare` does (or take aligned crops of any size), embed it
    with its mirror, L2-normalise. A photo that cannot be read or holds no face is a row with its status.

    Example: fskd embed photos/ --ckpt runs/f-skd-x8 --out photos.npz; fskd embed tinyface_crops/ --aligned --ckpt
    runs/f-skd-x8 --out lr.csv
    """
    from ..inference.model import load_model
    from ..use.embed import check_out, embed_images, write_embeddings
    from ..use.photos import list_photos

    no_face = _on_no_face(on_no_face, aligned)
    out = check_out(out)  # before any photo is read
    photos = list_photos(sources)
    model = load_model(ckpt, device=device)
    result = embed_images(model, photos, aligned=aligned, scale=scale or Scale.x1, flip=flip,
                          batch_size=batch_size, on_no_face=no_face)
    write_embeddings(out, result)
    done, total = int(result.ok.sum()), len(result.status)
    resized = sum(bool(r) for r in result.resized_from)
    console.print(f"[green]{escape(str(out))}[/]: {done} of {total} photos embedded ({result.embeddings.shape[1]}-d)"
                  + (f", {total - done} without a usable face (see status)" if total > done else "")
                  + (f"; {resized} crops resized to {model.input_size} x {model.input_size} as eval does "
                     "(column resized_from)" if resized else ""))
    if result.count("center"):
        console.print(f"{result.count('center')} of {total} photos had no face found; embedded their central crop "
                      "(status center)")


def verify_command(
    a: Annotated[Path, typer.Argument(help="First photo.")],
    b: Annotated[Path, typer.Argument(help="Second photo.")],
    ckpt: Ckpt,
    threshold: Annotated[float | None, typer.Option(help="Cosine threshold (default: from the run's newest "
                                                         "insightface-protocol verification eval at the matching scale).")]
    = None,
    scale: ScaleOpt = None,
    aligned: Annotated[bool, typer.Option("--aligned", help=ALIGNED_HELP)] = False,
    on_no_face: NoFaceOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the line (with each "
                                                          "photo's status and any resize).")] = False,
    device: Device = "auto",
) -> None:
    """Same person or not: the cosine of two photos' embeddings against a threshold, with its source.

    Example: fskd verify a.jpg b.jpg --ckpt runs/f-skd-x8; fskd verify a.png b.png --aligned --ckpt runs/f-skd-x8
    """
    from ..inference.model import load_model
    from ..use.verify import verify

    no_face = _on_no_face(on_no_face, aligned)
    verdict = verify(load_model(ckpt, device=device), a, b, threshold=threshold, scale=scale,
                     aligned=aligned, on_no_face=no_face)
    for path, status in zip((verdict.a, verdict.b), verdict.status, strict=True):
        if status == "center":
            console.print(f"{escape(path)}: no face found; compared its central crop (status center)")
    typer.echo(verdict.to_json() if json_out else verdict.line())


def export_command(
    ckpt: Ckpt,
    fmt: Annotated[one_of(EXPORT_FORMATS), typer.Option("--format", help="onnx (opset 17) or torchscript.")],
    out: Annotated[Path, typer.Option(help="The file to write; FILE.json beside it describes the input.")],
) -> None:
    """Export the backbone (normalised [N, 3, 112, 112] -> embedding, any N), checked against PyTorch.

    Example: fskd export --ckpt runs/f-skd-x8 --format onnx --out f-skd-x8.onnx
    """
    from ..inference.model import load_model
    from ..use.export import export_model

    check_export_out(fmt, out)  # a file named for another format is refused before the model is loaded
    done = export_model(load_model(ckpt, device="cpu"), fmt, out)
    console.print(f"[green]{done.path}[/] ({done.size_bytes / 2**20:.1f} MiB) and {done.sidecar}; largest difference "
                  f"from PyTorch {done.max_abs_diff:.2e}")


def import_teacher_command(
    weights: Annotated[Path, typer.Argument(help="insightface backbone.pth, or an AdaFace .ckpt.")],
    arch: Annotated[one_of(TEACHER_ARCHS), typer.Option(help="Depth of the network the weights are for.")],
    fmt: Annotated[one_of(TEACHER_FORMATS), typer.Option("--format", help="insightface (arcface_torch iResNet, RGB) or "
                                                                            "adaface (AdaFace IR, BGR).")],
    out: Annotated[Path, typer.Option(help="Run folder to create, e.g. runs/adaface-ir50.")],
    force: Annotated[bool, typer.Option(help="Write into a folder fskd did not create (nothing is deleted).")] = False,
) -> None:
    """Make an fskd teacher run from published weights, for distill, eval, analyze and embed.

    Example: fskd import-teacher ms1mv3_arcface_r50/backbone.pth --arch iresnet50 --format insightface --out runs/arcface-r50
    """
    from ..use.import_teacher import import_teacher

    path = import_teacher(weights, arch, fmt, out, force=force)
    console.print(f"[green]{path}[/]: {arch} teacher from {fmt} weights; "
                  f"use it with `fskd distill --teacher {path}`")
