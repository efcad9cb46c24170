"""Name resolution for training scripts: imports, aliases and dotted names.

``ImportTable`` maps the local names a module binds by ``import`` statements to fully
qualified names (``DS`` -> ``torch.utils.data.distributed.DistributedSampler``,
``tud`` -> ``torch.utils.data``). ``dotted`` turns a ``Name``/``Attribute`` chain into
its source spelling, and ``ImportTable.qualify`` into the qualified spelling.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import libcst as cst

__all__ = ["ImportTable", "dotted", "last_part", "matches"]


def dotted(node: cst.BaseExpression) -> Optional[str]:
    """``a.b.c`` for a chain of names and attributes, else None."""
    # By exact type: node classes are ABCs, and isinstance on them is slow (this runs
    # for most expressions of a walk); the parser makes no subclasses of these two.
    parts = []
    kind = type(node)
    while kind is cst.Attribute:
        parts.append(node.attr.value)
        node = node.value
        kind = type(node)
    if kind is cst.Name:
        if not parts:
            return node.value
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
    """Local name -> qualified name, for one module.

    ``names`` holds the dotted spelling used to recognise library names (relative
    imports lose their dots there); ``origins`` holds how each local name was imported,
    ``(level, module, name)``, for resolving it to a project file
    (``bnlint.script.resolve``): ``import a.b as x`` is ``(0, "a.b", None)``, ``import a.b``
    binds ``a`` as ``(0, "a", None)``, ``from ..m import f as g`` is ``(2, "m", "f")``.
    ``stars`` lists the ``(level, module)`` of ``from m import *``.
    """

    def __init__(self) -> None:
        self.names: Dict[str, str] = {}
        self.origins: Dict[str, Tuple[int, str, Optional[str]]] = {}
        self.stars: List[Tuple[int, str]] = []

    def add_import(self, node: cst.Import) -> None:
        for alias in node.names:
            full = _module_name(alias.name)
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.names[alias.asname.name.value] = full
                self.origins[alias.asname.name.value] = (0, full, None)
            else:
                head = full.split(".", 1)[0]
                self.names[head] = head
                self.origins[head] = (0, head, None)

    def add_import_from(self, node: cst.ImportFrom) -> None:
        module = _module_name(node.module)
        level = len(node.relative)
        if isinstance(node.names, cst.ImportStar):
            self.stars.append((level, module))
            return
        for alias in node.names:
            name = _module_name(alias.name)
            local = name
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                local = alias.asname.name.value
            self.names[local] = f"{module}.{name}" if module else name
            self.origins[local] = (level, module, name)

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
