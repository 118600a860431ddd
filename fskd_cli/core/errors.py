"""The one exception type for user mistakes.

Stage code raises :class:`FskdError` for anything the user can fix (a missing file, a wrong
option, a checkpoint of the wrong kind). The CLI prints its message as one line and exits
non-zero; every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any


class FskdError(Exception):
    """A user-facing error: the message names the file or option and what is wrong."""


def check_options(fn: Callable[..., Any], options: Mapping[str, Any], what: str, skip: tuple[str, ...] = ()) -> None:
    """Refuse recipe options that ``fn`` does not take, naming the ones it does.

    Factories check keyword arguments against the signature before calling, instead of turning any
    TypeError into a user error, so a TypeError raised inside a model or loss stays a bug with its traceback.
    """
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    known = [p for p in params if p not in ("self", *skip)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise FskdError(f"{what}: unknown option {unknown[0]!r} (it takes: {', '.join(known) or 'none'})")
