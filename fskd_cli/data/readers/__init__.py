"""One reader per source format, found by name in :data:`READERS` (``fskd prepare KIND``).

Importing this package registers every reader; a new format is one new module imported here.
"""

from . import binpairs, folder, lfw, recordio, tinyface  # noqa: F401  (each registers its readers)
from .base import READERS, Item, Source, UnreadableImage

__all__ = ["READERS", "Item", "Source", "UnreadableImage"]
