"""pytest helpers: guard your own models and training scripts in your test suite.

>>> from bnlint.testing import assert_no_findings
>>> def test_model_has_no_dropout_before_bn():
...     assert_no_findings(MyNet(), torch.randn(2, 3, 32, 32))  # doctest: +SKIP
>>> def test_training_script_reshuffles():
...     assert_no_findings(source=Path("train.py").read_text(), path="train.py")  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from bnlint.findings import Finding, Severity

__all__ = ["assert_no_findings", "format_findings"]


def format_findings(findings: Sequence[Finding]) -> str:
    """Findings as bnlint prints them, one per line."""
    from bnlint.report import location

    return "\n".join(
        f"{location(f)}: {f.code} [{f.severity.value}] {f.message}" for f in findings
    )


def assert_no_findings(model: Any = None, example_inputs: Any = None, *, source: Optional[str] = None,
                       path: str = "<string>", select: Optional[Sequence[str]] = None,
                       ignore: Sequence[str] = (), allow_warnings: bool = False) -> None:
    """Fail (``AssertionError``) when bnlint reports a problem.

    Give either a built ``model`` and its ``example_inputs`` (graph rules, BNL1xx), or
    ``source`` text (script rules, BNL2xx; ``path`` names it in the message). ``info``
    notes never fail; warnings fail unless ``allow_warnings``. ``select``/``ignore``
    take rule codes or prefixes. The message lists every finding, as the CLI would.
    """
    __tracebackhide__ = True  # pytest: show the assertion, not this helper
    from bnlint.api import check_model, check_source

    if (model is None) == (source is None):
        raise TypeError("assert_no_findings() takes a model (with example_inputs) or source=..., not both")
    if model is not None:
        if example_inputs is None:
            raise TypeError("assert_no_findings(model, example_inputs): example_inputs is required")
        findings = check_model(model, example_inputs, select=select, ignore=ignore)
        what = f"model {type(model).__name__}"
    else:
        findings = check_source(source, path=path, select=select, ignore=ignore)
        what = path
    failing = [
        f for f in findings
        if f.severity is Severity.ERROR or (f.severity is Severity.WARNING and not allow_warnings)
    ]
    if failing:
        noun = "problem" if len(failing) == 1 else "problems"
        raise AssertionError(
            f"bnlint found {len(failing)} {noun} in {what}:\n{format_findings(failing)}\n"
            f"(run 'bnlint explain {failing[0].code}' for the rule's documentation; "
            f"silence one with '# noqa: {failing[0].code}' or ignore={sorted({f.code for f in failing})!r})"
        )
