"""One reader per source format, found by kind in :data:`READERS` (``fskd prepare KIND``).

Importing this package registers every reader; a new format is one new module imported here.
"""

from . import binpairs, digits, folder, lfw, recordio, tinyface  # noqa: F401  (each registers its readers)
from .reader import READERS, Item, Reader, Source, UnreadableImage

__all__ = ["READERS", "Item", "Reader", "Source", "UnreadableImage"]
