"""YAML as fskd reads a recipe or a ``--set`` value: safe, no duplicate keys, and bounded in what it expands to.

PyYAML's ``safe_load`` keeps the last of two equal keys, so a recipe that sets ``lr`` twice silently runs with
the second; here the second is an error naming the file, the line and the key. Anchors and aliases
(``&a`` / ``*a``) are allowed, but a recipe may expand to at most :data:`MAX_VALUES` values with every alias
counted where it is used: a "billion laughs" (aliases of aliases, each doubling) is refused when it is
read, before it is copied into a config, written out or compared, where it would take all the memory.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from .errors import FskdError

#: values (scalars, lists and mappings) a recipe may expand to, every alias counted at each use; the largest
#: packaged recipe, its ``base:`` chain included, has about 80
MAX_VALUES = 10_000
_MERGE = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (``<<`` merges may be overridden)."""

    source = "YAML"

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeLoader says so below
                continue
            if duplicate:
                raise FskdError(f"{self.source}: line {key_node.start_mark.line + 1}: key {key!r} is given twice "
                                "in the same mapping; keep one")
            seen.add(key)
        return super().construct_mapping(node, deep)


def load(text: str, source: str) -> Any:
    """The YAML document in ``text``; FskdError naming ``source`` if it is not valid YAML, has a duplicate key,
    or expands to more than :data:`MAX_VALUES` values."""
    loader = _StrictLoader(text)
    loader.source = source
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {}, set(), source)
        if size > MAX_VALUES:
            raise FskdError(f"{source}: expands to more than {MAX_VALUES:,} values through YAML aliases (*name), "
                            f"each counted where it is used; a recipe may hold at most {MAX_VALUES:,}")
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise FskdError(f"{source}: not valid YAML ({' '.join(str(e).split())[:200]})") from None
    except RecursionError:
        raise FskdError(f"{source}: nested too deeply to be a recipe") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise FskdError(f"{source}: not valid YAML ({e})") from None
    finally:
        loader.dispose()


def _expanded_size(node: Node, sizes: dict[int, int], open_: set[int], source: str) -> int:
    """How many values ``node`` stands for once every alias is replaced by what it names (computed once per
    node, so counting a billion laughs takes as long as reading it)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise FskdError(f"{source}: line {node.start_mark.line + 1}: an alias refers to a value that contains it")
    open_.add(key)
    if isinstance(node, SequenceNode):
        children: list[Node] = list(node.value)
    elif isinstance(node, MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    size = 1 + sum(_expanded_size(child, sizes, open_, source) for child in children)
    open_.discard(key)
    sizes[key] = size
    return size
