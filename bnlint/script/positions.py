"""Source positions of CST nodes, computed lazily and only for reported nodes.

libcst's ``PositionProvider`` records a position for every node of a module, which
costs about twice the parse. Findings need a handful of positions per file, so this
module generates the module's code once (only for files with findings) and notes where
the wanted nodes start and end.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import libcst as cst

try:  # libcst's code generator state; public enough to subclass in practice
    from libcst._nodes.internal import CodegenState
except ImportError:  # pragma: no cover - fall back to the metadata provider
    CodegenState = None

__all__ = ["locate_nodes", "locate_unique", "locate_all_with_syntactic_positions"]

Position = Tuple[int, int]  # 1-based line, 0-based column


class _MarkingState(CodegenState or object):
    """Code generation that notes where nodes of the wanted types start and end."""

    def __init__(self, types, **kwargs):
        super().__init__(**kwargs)
        self.types = types
        self.starts: Dict[int, int] = {}
        self.ends: Dict[int, int] = {}

    def before_codegen(self, node) -> None:
        if type(node) in self.types:
            self.starts[id(node)] = len(self.tokens)

    def after_codegen(self, node) -> None:
        if type(node) in self.types:
            self.ends[id(node)] = len(self.tokens)


def _positions_from_tokens(tokens, marks: Dict[int, int]) -> Dict[int, Position]:
    out: Dict[int, Position] = {}
    wanted = sorted((index, key) for key, index in marks.items())
    line, col, done = 1, 0, 0
    for index, key in wanted:
        if done < index:  # the tokens in between, as one string (no loop per token)
            text = "".join(tokens[done:index])
            nl = text.count("\n")
            if nl:
                line += nl
                col = len(text) - text.rfind("\n") - 1
            else:
                col += len(text)
            done = index
        out[key] = (line, col)
    return out


def _skip_lead(tokens, start: int, end: int) -> int:
    """Move a start mark past whitespace-only tokens (parentheses stay)."""
    while start < end and not tokens[start].strip():
        start += 1
    return start


def locate_nodes(module: cst.Module, types) -> Dict[int, Tuple[Position, Position]]:
    """``id(node) -> ((line, col), (end_line, end_col))`` for every node of ``types``."""
    types = frozenset(types)
    if CodegenState is None:  # pragma: no cover
        from libcst.metadata import MetadataWrapper, PositionProvider

        wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
        pos = wrapper.resolve(PositionProvider)
        return {
            id(n): ((p.start.line, p.start.column), (p.end.line, p.end.column))
            for n, p in pos.items() if type(n) in types
        }
    state = _MarkingState(types, default_indent=module.default_indent,
                          default_newline=module.default_newline)
    module._codegen(state)
    tokens = state.tokens
    starts = {k: _skip_lead(tokens, i, state.ends.get(k, i)) for k, i in state.starts.items()}
    start_pos = _positions_from_tokens(tokens, starts)
    end_pos = _positions_from_tokens(tokens, state.ends)
    return {k: (start_pos[k], end_pos.get(k, start_pos[k])) for k in start_pos}


def locate_unique(module: cst.Module, text: str, node: cst.CSTNode) -> Optional[Tuple[Position, Position]]:
    """``((line, col), (end_line, end_col))`` of ``node`` as ``locate_nodes`` gives it,
    without generating the module's code, when that is certain: the node's own code is
    one line (so it does not depend on the indentation around it) and occurs exactly
    once in ``text``, the source ``module`` was parsed from (libcst gives back that
    source exactly, so the node's code is a slice of it: the only occurrence is the
    node's). None otherwise: the caller generates the module's code."""
    code = module.code_for_node(node)
    if not code or code[0].isspace() or "\n" in code or "\r" in code or "\f" in code:
        return None  # (where leading whitespace ends is a matter of tokens: not searched)
    start = text.find(code)
    if start < 0 or text.find(code, start + 1) >= 0:
        return None
    return _line_col(text, start), _line_col(text, start + len(code))


def _line_col(text: str, offset: int) -> Position:
    newline = text.rfind("\n", 0, offset)
    return text.count("\n", 0, offset) + 1, offset - newline - 1


def locate_all_with_syntactic_positions(module: cst.Module):
    """``(locate_nodes(module, every type), positions)`` from one code generation pass:
    the spans findings are reported at, and libcst's ``PositionProvider`` positions of
    every node, which fix planning needs (``bnlint.fix.cstindex``). For runs that plan
    fixes: the position metadata of a file is then built once."""
    from libcst.metadata.position_provider import PositionProvidingCodegenState

    from bnlint.fix.cstindex import syntactic_positions

    class MarkingPositionState(PositionProvidingCodegenState):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.starts: Dict[int, int] = {}
            self.ends: Dict[int, int] = {}

        def before_codegen(self, node) -> None:
            super().before_codegen(node)
            self.starts[id(node)] = len(self.tokens)

        def after_codegen(self, node) -> None:
            super().after_codegen(node)
            self.ends[id(node)] = len(self.tokens)

    states = []

    def make_state(**kwargs):
        states.append(MarkingPositionState(**kwargs))
        return states[-1]

    positions = syntactic_positions(module, make_state)
    state = states[0]
    tokens = state.tokens
    starts = {k: _skip_lead(tokens, i, state.ends.get(k, i)) for k, i in state.starts.items()}
    start_pos = _positions_from_tokens(tokens, starts)
    end_pos = _positions_from_tokens(tokens, state.ends)
    return {k: (start_pos[k], end_pos.get(k, start_pos[k])) for k in start_pos}, positions
