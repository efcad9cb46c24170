"""A parsed source file with positions and parents, for placing model fixes.

The graph tells the fixer *which* calls to move (a node's file, line and callee name);
this index finds those calls in the libcst tree and answers structural questions:
which statement and function hold a call, what text lies between two positions.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Tuple

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from bnlint.script.project import _FIELDS, _IS_NODE, _child_fields, _is_node

__all__ = ["SourceIndex", "Pos", "callee_name", "first_input", "is_pure_expression", "syntactic_positions",
           "sub_nodes"]

Pos = Tuple[int, int]  # 1-based line, 0-based column


def callee_name(call: cst.Call) -> Optional[str]:
    """Last name of the callee: ``self.drop(...)`` -> ``drop``, ``F.dropout`` -> ``dropout``."""
    func = call.func
    if isinstance(func, cst.Attribute):
        return func.attr.value
    if isinstance(func, cst.Name):
        return func.value
    return None


# Expressions without side effects: names, attributes, constants, comparisons, and/or/not.
_PURE = (cst.Name, cst.Attribute, cst.Comparison, cst.Integer, cst.Float, cst.SimpleString,
         cst.BooleanOperation, cst.UnaryOperation)


def is_pure_expression(node: cst.CSTNode) -> bool:
    """Whether evaluating ``node`` cannot call anything (so it may be evaluated at
    another place, or not at all): ``self.drop_rate > 0``, ``flag and not self.eval_mode``."""
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, cst.BaseExpression) and not isinstance(cur, _PURE):
            return False
        stack.extend(cur.children)
    return True


def _parents(module: cst.Module) -> Dict[cst.CSTNode, cst.CSTNode]:
    """Each node's parent, whitespace and punctuation left out. Reads dataclass fields
    directly: several times faster than libcst's ParentNodeProvider visitor."""
    parents: Dict[cst.CSTNode, cst.CSTNode] = {}
    stack: List[cst.CSTNode] = [module]
    fields, is_node = _FIELDS, _IS_NODE  # by type: CSTNode is an ABC, isinstance is slow
    while stack:
        current = stack.pop()
        cls = type(current)
        names = fields.get(cls)
        for name in names if names is not None else _child_fields(cls):
            value = getattr(current, name)
            vcls = type(value)
            if vcls is list or vcls is tuple:
                for item in value:
                    icls = type(item)
                    if is_node.get(icls) or (icls not in is_node and _is_node(icls)):
                        parents[item] = current
                        stack.append(item)
            elif is_node.get(vcls) or (vcls not in is_node and _is_node(vcls)):
                parents[value] = current
                stack.append(value)
    return parents


def syntactic_positions(module: cst.Module, state_class=None) -> Mapping[cst.CSTNode, "CodeRange"]:
    """libcst's ``PositionProvider`` positions of every node of ``module`` (one code
    generation pass), without ``MetadataWrapper``, whose resolve also walks the whole
    tree with a visitor first (about 1.4x the cost). ``state_class``: a subclass of
    libcst's position-providing codegen state that notes more on the same pass."""
    try:
        from libcst.metadata.position_provider import PositionProvidingCodegenState

        provider = PositionProvider()
        state = (state_class or PositionProvidingCodegenState)(
            default_indent=module.default_indent, default_newline=module.default_newline, provider=provider)
        module._codegen(state)
        return provider._computed
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - another libcst
        if state_class is not None:
            raise
        return MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)


# Fields that hold only whitespace, comments and punctuation (no names, calls or
# strings): a walk for those may skip them.
_PUNCTUATION_FIELDS = (
    "whitespace", "lpar", "rpar", "comma", "leading_lines", "lines_after", "header", "footer", "newline",
    "semicolon", "trailing_whitespace", "colon", "equal", "lbracket", "rbracket", "lbrace", "rbrace", "arrow",
    "asynchronous", "operator", "dot", "relative",
)
_CODE_FIELDS: Dict[type, Tuple[str, ...]] = {}


def sub_nodes(node: cst.CSTNode) -> List[cst.CSTNode]:
    """The node's children without whitespace and punctuation nodes (what
    ``node.children`` gives, less those, many times faster: fields are read directly)."""
    cls = type(node)
    names = _CODE_FIELDS.get(cls)
    if names is None:
        import dataclasses

        names = _CODE_FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls)
                                          if not f.name.startswith(_PUNCTUATION_FIELDS))
    out: List[cst.CSTNode] = []
    is_node = _IS_NODE
    for name in names:
        value = getattr(node, name)
        vcls = type(value)
        if vcls is list or vcls is tuple:
            out.extend(v for v in value if is_node.get(type(v)) or _is_node(type(v)))
        elif is_node.get(vcls) or (vcls not in is_node and _is_node(vcls)):
            out.append(value)
    return out


class SourceIndex:
    """One file's CST with node positions and parents (libcst metadata).

    Parents are found when the index is made (a fast walk over the tree); positions,
    which take a code generation pass over the whole file, on the first question that
    needs them, or are given (``positions``: ``syntactic_positions`` of the module)."""

    def __init__(self, path: str, text: Optional[str], module: Optional[cst.Module] = None,
                 positions: Optional[Mapping[cst.CSTNode, "CodeRange"]] = None):
        self.path = path
        if text is not None:
            self.__dict__["text"] = text
        self.module = module if module is not None else cst.parse_module(text)
        self._given = positions
        self._parent = _parents(self.module)

    @classmethod
    def from_module(cls, path: str, module: cst.Module,
                    positions: Optional[Mapping[cst.CSTNode, "CodeRange"]] = None) -> "SourceIndex":
        """Index an already parsed module (node identities are kept; its text is
        generated when first needed)."""
        return cls(path, None, module, positions)

    @property
    def text(self) -> str:
        if "text" not in self.__dict__:
            self.__dict__["text"] = self.module.code
        return self.__dict__["text"]

    @property
    def _lines(self) -> List[str]:
        if "_line_list" not in self.__dict__:
            self.__dict__["_line_list"] = self.text.split("\n")
        return self.__dict__["_line_list"]

    @property
    def _starts(self) -> List[int]:
        if "_line_starts" not in self.__dict__:
            starts = [0]
            for line in self._lines:
                starts.append(starts[-1] + len(line) + 1)
            self.__dict__["_line_starts"] = starts
        return self.__dict__["_line_starts"]

    @property
    def _pos(self) -> Mapping[cst.CSTNode, "CodeRange"]:
        pos = self.__dict__.get("_positions")
        if pos is None:
            pos = self._given if self._given is not None else syntactic_positions(self.module)
            self.__dict__["_positions"] = pos
        return pos

    @property
    def _calls(self) -> Dict[int, List[cst.Call]]:
        calls = self.__dict__.get("_calls_by_line")
        if calls is None:
            calls = {}
            for node, pos in self._pos.items():
                if isinstance(node, cst.Call):
                    calls.setdefault(pos.start.line, []).append(node)
            self.__dict__["_calls_by_line"] = calls
        return calls

    # ---------------------------------------------------------------- positions
    def start(self, node: cst.CSTNode) -> Pos:
        p = self._pos[node].start
        return (p.line, p.column)

    def end(self, node: cst.CSTNode) -> Pos:
        p = self._pos[node].end
        return (p.line, p.column)

    def offset(self, pos: Pos) -> int:
        line, col = pos
        if line - 1 >= len(self._lines):
            return len(self.text)
        return min(self._starts[line - 1] + col, len(self.text))

    def between(self, a: Pos, b: Pos) -> str:
        return self.text[self.offset(a):self.offset(b)]

    def code(self, node: cst.CSTNode) -> str:
        return self.between(self.start(node), self.end(node))

    def line_text(self, line: int) -> str:
        return self._lines[line - 1] if 0 < line <= len(self._lines) else ""

    def indent_of(self, line: int) -> str:
        text = self.line_text(line)
        return text[: len(text) - len(text.lstrip(" \t"))]

    # ---------------------------------------------------------------- structure
    def parent(self, node: cst.CSTNode) -> Optional[cst.CSTNode]:
        return self._parent.get(node)

    def ancestor(self, node: cst.CSTNode, kind) -> Optional[cst.CSTNode]:
        cur = self.parent(node)
        while cur is not None and not isinstance(cur, kind):
            cur = self.parent(cur)
        return cur

    def statement(self, node: cst.CSTNode) -> Optional[cst.SimpleStatementLine]:
        return self.ancestor(node, cst.SimpleStatementLine)

    def function(self, node: cst.CSTNode) -> Optional[cst.FunctionDef]:
        return self.ancestor(node, cst.FunctionDef)

    def klass(self, node: cst.CSTNode) -> Optional[cst.ClassDef]:
        return self.ancestor(node, cst.ClassDef)

    def calls_at(self, line: int, name: Optional[str] = None, method: Optional[bool] = None) -> List[cst.Call]:
        """Calls starting on ``line`` (or spanning it) whose callee is named ``name``."""
        found = list(self._calls.get(line, []))
        if not found:
            found = [c for calls in self._calls.values() for c in calls
                     if self._pos[c].start.line <= line <= self._pos[c].end.line]
        out = []
        for c in found:
            if name is not None and callee_name(c) != name:
                continue
            if method is not None and isinstance(c.func, cst.Attribute) != method:
                continue
            out.append(c)
        return out

    def call_at(self, line: int, col: int, name: Optional[str] = None) -> Optional[cst.Call]:
        for c in self._calls.get(line, []):
            if self._pos[c].start.column == col and (name is None or callee_name(c) == name):
                return c
        return None


def first_input(call: cst.Call) -> Optional[cst.Arg]:
    """The tensor argument of a layer or functional call: the first positional argument
    (or ``input=``)."""
    for arg in call.args:
        if arg.star:
            return None
        if arg.keyword is None:
            return arg
        if arg.keyword.value == "input":
            return arg
    return None
