"""pytest helpers: guard your own models and training scripts in your test suite.

>>> from bnlint.testing import assert_no_findings
>>> def test_model_has_no_dropout_before_bn():
...     assert_no_findings(MyNet(), torch.randn(2, 3, 32, 32))  # doctest: +SKIP
>>> def test_training_script_reshuffles():
...     assert_no_findings(source=Path("train.py").read_text(), path="train.py")  # doctest: +SKIP
>>> def test_train_loader_reshuffles_every_epoch():
...     assert_reshuffles(make_train_loader(), epochs=2)  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from bnlint.findings import Finding, Severity

__all__ = ["assert_no_findings", "assert_reshuffles", "format_findings"]


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


_RESHUFFLE_LIMIT = 1024  # sample indices compared per pass
_MAX_PASSES = 32


def assert_reshuffles(loader: Any, epochs: int = 2, *, before_epoch: Optional[Callable[[int], Any]] = None) -> None:
    """Fail (``AssertionError``) unless ``loader`` draws a new sample order every pass.

    Iterates ``loader`` ``epochs`` times, each pass only as far as its first 1,024
    sample indices (for an IterableDataset, samples), recording them as the runtime
    watch of ``bnlint run`` does; ``before_epoch(epoch)`` is called before each pass
    when given, e.g. ``before_epoch=loader.sampler.set_epoch`` for a
    DistributedSampler. When every pass agrees but a dataset this small could agree
    by chance, more passes are drawn (up to 32) until the answer is clear. Fails when
    two passes drew the same order (Single Shuffle, BNL206), naming the likely cause.
    """
    __tracebackhide__ = True
    from bnlint.rules.bnl206_order_repeated_at_runtime import reshuffle_hint
    from bnlint.runtime.orders import describe_loader, log10_chance_equal, repeated_passes
    from bnlint.runtime.watch import Watch

    if not isinstance(epochs, int) or epochs < 2:
        raise ValueError(f"assert_reshuffles(loader, epochs={epochs!r}): epochs must be an integer >= 2")
    batch = getattr(loader, "batch_size", None) or 1
    per_pass = -(-_RESHUFFLE_LIMIT // batch)  # batches that hold the compared indices

    def one_pass(epoch: int) -> None:
        if before_epoch is not None:
            before_epoch(epoch)
        for count, _ in enumerate(loader, 1):
            if count >= per_pass:
                break

    with Watch(limit=_RESHUFFLE_LIMIT) as watch:
        for epoch in range(epochs):
            one_pass(epoch)
        passes = epochs
        while passes < _MAX_PASSES:
            observed = _passes_of(watch.observations())
            if observed is None or len({p.order for p in observed.passes}) > 1:
                break
            first = observed.passes[0].order
            population = len(set(first))
            chance = (passes - 1) * log10_chance_equal(len(first), population, False)
            if chance <= -6.0 or population <= 1:
                break
            one_pass(passes)  # the same so far, but this few samples could agree by chance
            passes += 1
    observed = _passes_of(watch.observations())
    if observed is None:
        raise AssertionError(f"assert_reshuffles: {type(loader).__name__} is not a torch DataLoader, or it "
                             f"yielded no batch")
    facts, what = observed.facts, "samples" if observed.facts.iterable else "indices"
    described = describe_loader(facts)
    found = repeated_passes(observed)
    if found is None and len({p.order for p in observed.passes}) > 1:
        return
    numbers = [p.number for p in observed.passes] if found is None else \
        [found.first.number] + [p.number for p in found.repeats]
    compared = len(observed.passes[0].order) if found is None else found.compared
    if facts.sampler == "SequentialSampler" and not facts.sampler_own and not facts.iterable:
        cause = "it uses SequentialSampler (shuffle=False): pass shuffle=True or a shuffling sampler"
    else:
        cause = reshuffle_hint(facts, rebuilt=False)
        if facts.sampler == "DistributedSampler" and before_epoch is None:
            cause += " (in this test: before_epoch=loader.sampler.set_epoch)"
    raise AssertionError(
        f"{described} drew the same order in passes {', '.join(map(str, numbers[:-1]))} and {numbers[-1]} "
        f"(first {compared} {what} identical), so every epoch would see the same batches (Single "
        f"Shuffle, BNL206); {cause}"
    )


def _passes_of(observations):
    """The passes of the loader under test, all counted as training passes."""
    from dataclasses import replace

    from bnlint.runtime.orders import LoaderObservation

    passes = tuple(replace(p, training=True) for obs in observations for p in obs.passes if p.order)
    if not passes:
        return None
    return LoaderObservation(observations[0].facts, passes)
