"""The Python API: check a live model or a source string from your own code and tests.

>>> import bnlint
>>> findings = bnlint.check_model(model, (torch.randn(2, 3, 32, 32),))  # doctest: +SKIP
>>> findings = bnlint.check_source(open("train.py").read(), path="train.py")  # doctest: +SKIP

``check_model`` runs in this process (the model is already built: nothing is
imported): it traces the model with ``bnlint.model.trace``, builds the fact graph with
``bnlint.model.graphbuild`` and runs the graph rules (BNL1xx). The model is left as it was:
train/eval mode, BatchNorm running statistics and the random number generators are
restored. ``check_source`` runs the script rules (BNL2xx) on a string, statically.
Both honour ``# noqa`` / ``# bnlint: ignore[...]`` comments and return sorted
``bnlint.findings.Finding`` values (``info`` notes included; they never count).
"""
from __future__ import annotations

import contextlib
import inspect
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from bnlint.findings import Finding
from bnlint.rule import Rule, RuleKind

__all__ = ["check_model", "check_source"]


def _rules(kind: RuleKind, select: Optional[Sequence[str]], ignore: Sequence[str]) -> List[Rule]:
    from bnlint.registry import select_rules

    if isinstance(select, str):
        select = [select]
    if isinstance(ignore, str):
        ignore = [ignore]
    return [r for r in select_rules(select, ignore) if r.kind is kind]


def _suppressed(findings: Sequence[Finding], texts: Dict[str, Optional[str]]) -> List[Finding]:
    """Drop findings silenced by comments in their files (read from disk unless given)."""
    from bnlint.suppress import parse_suppressions

    cache = {}
    kept = []
    for f in findings:
        if f.path not in cache:
            text = texts.get(f.path)
            if text is None and os.path.isfile(f.path):
                try:
                    with open(f.path, encoding="utf-8", errors="replace") as fh:
                        text = fh.read()
                except OSError:
                    text = None
            cache[f.path] = parse_suppressions(text) if text is not None else None
        sup = cache[f.path]
        lines = {f.line, dict(f.details).get("definition_line")}
        if sup is not None and f.code != "BNL001" and any(sup.suppresses(l, f.code) for l in lines if l):
            continue
        kept.append(f)
    return sorted(kept, key=Finding.sort_key)


def check_source(text: str, path: str = "<string>", *, select: Optional[Sequence[str]] = None,
                 ignore: Sequence[str] = ()) -> List[Finding]:
    """Findings of the script rules (single-shuffle idioms, BNL2xx) for source ``text``.

    ``path`` is only used to name the file in findings. A syntax error is one
    ``BNL001`` finding. ``select``/``ignore`` take codes or prefixes, as on the command
    line.
    """
    import ast

    from bnlint.script import run_script_rules
    from bnlint.sources import SourceFile
    from bnlint.suppress import parse_suppressions

    if not isinstance(text, str):
        raise TypeError(f"check_source() takes the source as a str, got {type(text).__name__}")
    try:
        ast.parse(text, filename=path)
    except SyntaxError as exc:
        from bnlint.engine import analysis_failure

        return [analysis_failure(path, f"syntax error: {exc.msg}", line=exc.lineno or 1, column=exc.offset or 1)]
    if parse_suppressions(text).skip_file:
        return []
    source = SourceFile(path=path, text=text, encoding="utf-8", bom=False, newline="\n",
                        raw=text.encode("utf-8"))
    rules = _rules(RuleKind.SCRIPT, select, ignore)
    return _suppressed(run_script_rules([source], rules), {path: text})


# ---------------------------------------------------------------- models

@contextlib.contextmanager
def _model_left_as_it_was(model, inputs: Tuple[Any, ...]) -> Iterator[None]:
    """Analysis runs the model in train mode (BN updates its running statistics and
    dropout draws random numbers): restore modes, buffers and RNG state afterwards."""
    import torch

    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers() if b.device.type != "meta"]
    devices = sorted({t.device.index or 0 for t in inputs if isinstance(t, torch.Tensor) and t.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            yield
    finally:
        with torch.no_grad():
            for buf, saved in buffers:
                if buf.shape == saved.shape:
                    buf.copy_(saved)
        for module, training in modes:
            module.training = training


def _source_of(model) -> Tuple[str, Optional[int]]:
    """(file, line) where the model's class is defined; ``<unknown>`` when not in a file."""
    cls = type(model)
    try:
        file = inspect.getsourcefile(cls)
        line = inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return "<unknown>", None
    if not file:
        return "<unknown>", None
    return os.path.abspath(file), line


def _display(path: str) -> str:
    if path.startswith("<"):
        return path
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def _analyse(model, inputs: Tuple[Any, ...], name: str, def_line: Optional[int]) -> Dict[str, Any]:
    """The same record the worker produces for one model (see ``bnlint.model.worker``)."""
    import torch

    from bnlint.model.graphbuild import build_graph, graph_to_json
    from bnlint.model.trace import trace_model
    from bnlint.model.worker import _describe, _run_on_inputs

    out: Dict[str, Any] = {"name": name, "errors": [], "notes": [], "def_line": def_line}
    model.train()
    tr = trace_model(model)
    error = _run_on_inputs(model, tr, inputs)
    if error is not None:
        shapes = ", ".join(str(tuple(t.shape)) for t in inputs if isinstance(t, torch.Tensor))
        out["errors"].append({"stage": "forward", "message": _describe(error), "line": None, "inputs": shapes})
    graph, opaque, concrete = build_graph(model, tr)
    out.update(graph=graph_to_json(graph), opaque=opaque, concrete=concrete)
    return out


def check_model(model, example_inputs, *, select: Optional[Sequence[str]] = None,
                ignore: Sequence[str] = (), name: Optional[str] = None) -> List[Finding]:
    """Findings of the graph rules (dropout around BatchNorm, BNL1xx) for a built model.

    Parameters
    ----------
    model : torch.nn.Module
        The model, as your code builds it. It is traced in train mode and run once on
        ``example_inputs``; its mode, buffers and the RNG state are restored.
    example_inputs : Tensor or tuple
        What ``model(*example_inputs)`` is called with (a single tensor is fine).
    select, ignore : codes or prefixes, optional
        Rule selection, as ``--select``/``--ignore``.
    name : str, optional
        The model's name in messages (default: its class name).

    Findings point at the dropout's call in ``forward`` (or, for a dropout applied by
    an ``nn.Sequential``, at the ``forward`` that calls the Sequential), with the
    model's source file as the path. A forward that raises on the inputs is a
    ``BNL001`` finding.
    """
    import torch

    from bnlint.model.modelcheck import ModelJob, _findings_for_job

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"check_model() takes a torch.nn.Module, got {type(model).__name__}")
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    name = name or type(model).__name__
    file, def_line = _source_of(model)
    rules = _rules(RuleKind.GRAPH, select, ignore)
    with _model_left_as_it_was(model, inputs):
        record = _analyse(model, inputs, name, def_line)
    job = ModelJob(path=_display(file), abs_path=file)
    findings = _findings_for_job(job, {"models": [record]}, rules)
    return _suppressed(findings, {})
