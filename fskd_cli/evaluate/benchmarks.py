"""What ``fskd eval`` can be asked for: the benchmarks (the task and default data folder of each) and the
verification protocols.

Plain names in a module that imports nothing heavy: the command line builds ``fskd eval``'s choices and help
from these definitions (and the stage checks against them), so ``fskd eval --help`` or a mistyped benchmark
is answered without loading torch.
"""

from __future__ import annotations

# benchmark name -> (task, default data folder); `verification`/`identification` take any prepared set
BENCHMARKS: dict[str, tuple[str, str | None]] = {
    "digits": ("classification", "data/digits"),
    "svhn": ("classification", "data/svhn"),
    "verification": ("verification", None),
    "agedb": ("verification", "data/agedb"),
    "lfw": ("verification", "data/lfw"),
    "cfp-fp": ("verification", "data/cfp-fp"),
    "identification": ("identification", None),
    "tinyface": ("identification", "data/tinyface"),
}
#: how 1:1 pairs are scored and thresholded (see :mod:`.verification`); the first is the default
PROTOCOLS = ("insightface", "authors")
