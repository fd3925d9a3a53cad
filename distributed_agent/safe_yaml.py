"""YAML read as data, strictly: PyYAML's safe loader, plus refusal of duplicate keys (silently
resolved otherwise) and of aliases that expand beyond a sane size (a few hundred bytes of
nested aliases otherwise expand to gigabytes)."""

from __future__ import annotations

import yaml

from .config import ConfigError

MAX_VALUES = 100_000  # scalars after alias expansion; real specs have a few hundred


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise ConfigError(
                    f"{self.where}: duplicate key {key!r} (line {key_node.start_mark.line + 1}); "
                    "each key may appear once"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node, sizes: dict) -> int:
    """Scalars the node stands for once every alias is expanded (shared nodes counted each time)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 1  # a recursive alias: counted once, as PyYAML builds it once
    if isinstance(node, yaml.SequenceNode):
        size = sum(_expanded_size(item, sizes) for item in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    else:
        size = 1
    sizes[id(node)] = size
    return size


def load_yaml(text: str, where: str):
    """The YAML document in `text` as Python data; ConfigError naming `where` if it is not
    valid YAML, has duplicate keys, or expands beyond MAX_VALUES values."""
    loader = _StrictLoader(text)
    loader.where = where
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_VALUES:
            raise ConfigError(f"{where}: its aliases expand to more than {MAX_VALUES:,} values; write the values out")
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{where} is not valid YAML{line}") from None
    finally:
        loader.dispose()
