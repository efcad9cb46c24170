"""## What it does
Reports a file or model that bnlint could not analyse (a syntax error, an import
error, a constructor or forward that raises, a model that does not trace, a worker
that timed out or crashed; as a warning, a model that needs a package that is not
installed or a download), and, as ``info`` notes, blocks of a model that were analysed
only from the outside, the packages replaced by stand-ins, and top-level statements
left out of the import because they raised.

## Why is this bad?
Code bnlint cannot read is code it cannot vouch for. A silent skip would let a
misplaced dropout through; the diagnostic says what was not checked and why.

## Example
```python
class Net(nn.Module):
    def __init__(self, depth):  # needs an argument: bnlint cannot build it
        ...
```

## Use instead
Name the arguments on the command line, `bnlint check net.py::Net(depth=18)`, or in
`[tool.bnlint] models = ["net.py::Net(depth=18)"]`. A model the training script builds
from its options is also built with the values of the command lines the project
documents for that script (`python train.py --depth 28` in a README or a shell
script), when its defaults do not build it. Give a module-level `example_inputs()`
returning a tuple of tensors when the input shape cannot be inferred from the first
layer.

## Fix safety
There is no automatic fix; the message says what to do.

## References
- bnlint design, section 4 ("How it works").
"""
from bnlint.findings import Severity
from bnlint.rule import Rule, RuleKind

RULE = Rule(
    code="BNL001",
    name="analysis-failed",
    summary="A file or model could not be analysed (or was analysed only in part)",
    kind=RuleKind.ANALYSIS,
    severity=Severity.ERROR,
    doc=__doc__,
)
