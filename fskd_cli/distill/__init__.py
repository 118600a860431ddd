"""One registry of distillation methods, found by name from a recipe.

A method is a class registered with :func:`register_distiller`. It is an ``nn.Module`` (some methods own
trainable parts, e.g. FitNet's hint layers, which join the optimizer) built from the student's and the
teacher's tapped feature shapes and the recipe's options, and called as
``loss = distiller(student_feats, teacher_feats, batch)``. The loss it returns is already weighted.
Adding a method is one new file with one registered class plus a recipe; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..core.errors import FskdError, check_options


class Distiller(nn.Module):
    """Base class.

    ``needs_teacher = False`` lets the loop skip the teacher forward altogether (and lets the method serve
    as a teacher run's auxiliary loss). ``tap_layers`` names the modules whose outputs the method compares
    (by default the backbone's stage outputs). ``wants_teacher_checkpoint`` hands the teacher's checkpoint
    to the constructor, for methods that reuse parts trained with the teacher (QualNet's decoder).
    The ``batch`` dict holds ``hr`` (teacher input), ``labels``, ``scale``, ``embedding`` (student's) and
    ``teacher_embedding``.
    """

    needs_teacher = True
    wants_teacher_checkpoint = False
    weighted = True  # False: no distillation term, so a weight (--lambda) would change nothing
    summary = ""  # one line for ``fskd distill --help``
    # what tables, figures and comparisons say about the method (one place: analyze reads these)
    paper_name = ""  # how the paper writes it ("F-SKD"); empty: the registry name
    table_order = 100  # its row among the methods of the paper's tables (smaller first)
    teacher_variant: str | None = None  # a teacher it always needs ("dec": QualNet's decoder), so rows need no mark

    @classmethod
    def tap_layers(cls, model: nn.Module) -> list[str]:
        return list(model.feature_layers)

    def __init__(self, student_shapes: Sequence[torch.Size], teacher_shapes: Sequence[torch.Size],
                 weight: float = 1.0) -> None:
        super().__init__()
        if self.needs_teacher and len(student_shapes) != len(teacher_shapes):
            raise FskdError(f"student taps {len(student_shapes)} features, teacher {len(teacher_shapes)}")
        self.weight = weight

    def forward(self, student: list[torch.Tensor], teacher: list[torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError


_DISTILLERS: dict[str, type[Distiller]] = {}


def register_distiller(name: str) -> Callable[[type[Distiller]], type[Distiller]]:
    def deco(cls: type[Distiller]) -> type[Distiller]:
        if name in _DISTILLERS:
            raise ValueError(f"distiller {name!r} registered twice")
        cls.method_name = name
        _DISTILLERS[name] = cls
        return cls

    return deco


def method_names() -> list[str]:
    _import_all()
    return sorted(_DISTILLERS)


def method_summaries() -> dict[str, str]:
    """Every registered method with its one-line summary, for the command line's help."""
    _import_all()
    return {name: _DISTILLERS[name].summary for name in sorted(_DISTILLERS)}


def create_distiller(name: str, student_shapes: Sequence[torch.Size], teacher_shapes: Sequence[torch.Size],
                     **options: Any) -> Distiller:
    """Build a registered method; options it does not take are a user's mistake, named with the ones it does."""
    cls = get_distiller_class(name)
    check_options(cls.__init__, options, f"method {name!r}", skip=("student_shapes", "teacher_shapes"))
    return cls(student_shapes, teacher_shapes, **options)


def find_distiller_class(name: str) -> type[Distiller] | None:
    """The registered class of ``name``, or None (results may name methods of another installation)."""
    _import_all()
    return _DISTILLERS.get(name)


def get_distiller_class(name: str) -> type[Distiller]:
    _import_all()
    if name not in _DISTILLERS:
        raise FskdError(f"unknown method {name!r}; choose from {', '.join(sorted(_DISTILLERS))}")
    return _DISTILLERS[name]


def _import_all() -> None:
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
