"""``fskd embed``, ``fskd verify``, ``fskd export`` and ``fskd import-teacher``: using a model outside the
benchmarks. The logic is in :mod:`fskd_cli.use`; these functions parse options and print results. The formats and
architectures offered are the stage's own (:mod:`fskd_cli.use.formats`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..core.device import DEVICE_HELP
from ..core.scale import SINGLE_SCALES, Scale
from ..use.formats import EXPORT_FORMATS, TEACHER_ARCHS, TEACHER_FORMATS
from .choices import one_of

console = Console(stderr=True)

Ckpt = Annotated[Path, typer.Option(help="A run folder or its checkpoint.pt (teacher, student or imported).")]
Device = Annotated[str, typer.Option(help=DEVICE_HELP)]
ScaleOpt = Annotated[one_of(SINGLE_SCALES) | None, typer.Option(
    help="Degrade the photos first, as the run's LR images were made: what a camera this many times farther "
         "away would give (1, 2, 4 or 8).")]


def embed_command(
    sources: Annotated[list[Path], typer.Argument(metavar="SRC...", help="Photo files or folders of them.")],
    ckpt: Ckpt,
    out: Annotated[Path, typer.Option(help="Output file: .npz (embeddings, paths, status, reason) or .csv.")]
    = Path("embeddings.npz"),
    scale: ScaleOpt = None,
    aligned: Annotated[bool, typer.Option("--aligned", help="The photos already are aligned crops of the model's "
                                                            "input size (112 x 112): skip detection.")] = False,
    flip: Annotated[bool, typer.Option(help="Add the mirror image's embedding, as eval does.")] = True,
    device: Device = "auto",
    batch_size: Annotated[int, typer.Option(help="Photos per batch.", min=1)] = 32,
) -> None:
    """Embed photos: detect and align each face as `prepare` does, embed it with its mirror, L2-normalise.

    Example: fskd embed photos/ --ckpt runs/f-skd-x8 --out photos.npz
    """
    from ..inference.model import load_model
    from ..use.embed import embed_photos, write_embeddings

    model = load_model(ckpt, device=device)
    result = embed_photos(model, sources, aligned=aligned, scale=scale or Scale.x1, flip=flip,
                          batch_size=batch_size)
    write_embeddings(out, result)
    failed = len(result.status) - int(result.ok.sum())
    console.print(f"[green]{out}[/]: {int(result.ok.sum())} of {len(result.status)} photos embedded "
                  f"({result.embeddings.shape[1]}-d)" + (f", {failed} without a usable face (see status)" if failed else ""))


def verify_command(
    a: Annotated[Path, typer.Argument(help="First photo.")],
    b: Annotated[Path, typer.Argument(help="Second photo.")],
    ckpt: Ckpt,
    threshold: Annotated[float | None, typer.Option(help="Cosine threshold (default: from the run's newest "
                                                         "insightface-protocol verification eval at the matching scale).")]
    = None,
    scale: ScaleOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the line.")] = False,
    device: Device = "auto",
) -> None:
    """Same person or not: the cosine of two photos' embeddings against a threshold, with its source.

    Example: fskd verify a.jpg b.jpg --ckpt runs/f-skd-x8
    """
    from ..inference.model import load_model
    from ..use.verify import verify

    verdict = verify(load_model(ckpt, device=device), a, b, threshold=threshold, scale=scale)
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
