"""Name resolution for training scripts: imports, aliases and dotted names.

``ImportTable`` maps the local names a module binds by ``import`` statements to fully
qualified names (``DS`` -> ``torch.utils.data.distributed.DistributedSampler``,
``tud`` -> ``torch.utils.data``). ``dotted`` turns a ``Name``/``Attribute`` chain into
its source spelling, and ``ImportTable.qualify`` into the qualified spelling.
"""
from __future__ import annotations

from typing import Dict, Optional

import libcst as cst

__all__ = ["ImportTable", "dotted", "last_part", "matches"]


def dotted(node: cst.BaseExpression) -> Optional[str]:
    """``a.b.c`` for a chain of names and attributes, else None."""
    parts = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


def last_part(name: Optional[str]) -> str:
    return name.rsplit(".", 1)[-1] if name else ""


def matches(qualname: Optional[str], *candidates: str) -> bool:
    """True when ``qualname`` is one of ``candidates`` (qualified spellings)."""
    return qualname is not None and qualname in candidates


def _module_name(node) -> str:
    if node is None:
        return ""
    return dotted(node) or ""


class ImportTable:
    """Local name -> qualified name, for one module."""

    def __init__(self) -> None:
        self.names: Dict[str, str] = {}

    def add_import(self, node: cst.Import) -> None:
        for alias in node.names:
            full = _module_name(alias.name)
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.names[alias.asname.name.value] = full
            else:
                head = full.split(".", 1)[0]
                self.names[head] = head

    def add_import_from(self, node: cst.ImportFrom, package: str = "") -> None:
        module = _module_name(node.module)
        if node.relative:
            # Relative imports resolve against the checked files by their last part.
            module = module or package
        if isinstance(node.names, cst.ImportStar):
            return
        for alias in node.names:
            name = _module_name(alias.name)
            local = name
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                local = alias.asname.name.value
            self.names[local] = f"{module}.{name}" if module else name

    def qualify(self, node: cst.BaseExpression) -> Optional[str]:
        """The qualified name of a name/attribute chain whose head is imported."""
        text = dotted(node)
        if text is None:
            return None
        head, _, rest = text.partition(".")
        full = self.names.get(head)
        if full is None:
            return None
        return f"{full}.{rest}" if rest else full
