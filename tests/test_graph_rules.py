"""The graph rules as pure functions over hand-built fact graphs (no torch)."""
from __future__ import annotations

import sys

import networkx as nx

from bnlint.registry import rule_by_code
from bnlint.rule import DOC_HEADINGS, RuleKind
from bnlint.registry import all_rules


def chain(*kinds, **extra):
    """A linear graph n0 -> n1 -> ... with the given kinds; dropouts active, p=0.5."""
    g = nx.DiGraph()
    for i, kind in enumerate(kinds):
        attrs = {"kind": kind, "op": "call_module", "module_path": f"m{i}", "module_type": f"torch.X{kind}"}
        if kind == "dropout":
            attrs.update(p=extra.get("p", 0.5), active=extra.get("active", True))
        g.add_node(f"n{i}", **attrs)
        if i:
            g.add_edge(f"n{i-1}", f"n{i}")
    return g


def codes(g):
    out = []
    for code in ("BNL101", "BNL102", "BNL103"):
        out += [(code, h.node) for h in rule_by_code(code).check(g)]
    return out


def test_dropout_into_bn_through_value_preserving_ops():
    assert codes(chain("weight", "dropout", "activation", "reshape", "pool", "batchnorm")) == [("BNL101", "n1")]


def test_inactive_or_zero_dropout_is_never_flagged():
    assert codes(chain("dropout", "batchnorm", active=False)) == []


def test_residual_add_breaks_the_path():
    g = chain("input", "dropout", "weight", "add", "batchnorm")
    g.add_edge("n0", "n3")
    assert codes(g) == []
    g2 = chain("input", "dropout", "add", "batchnorm")
    g2.add_edge("n0", "n2")
    assert codes(g2) == []


def test_concat_is_transparent():
    g = chain("input", "dropout", "concat", "batchnorm")
    g.add_edge("n0", "n2")
    assert codes(g) == [("BNL101", "n1")]


def test_weight_layers_between_give_bnl103_only():
    assert codes(chain("dropout", "weight", "activation", "weight", "batchnorm")) == [("BNL103", "n0")]


def test_dropout_after_global_pool():
    assert codes(chain("global-pool", "reshape", "dropout", "weight")) == [("BNL102", "n2")]
    # pool -> dropout -> BatchNorm1d is a dropout feeding BN, not BNL102
    assert codes(chain("global-pool", "reshape", "dropout", "batchnorm", "weight")) == [("BNL101", "n2")]
    # a weight layer between the pooling and the dropout (MobileNetV3) is fine
    assert codes(chain("global-pool", "weight", "activation", "dropout", "weight")) == []
    # non-global pooling is fine
    assert codes(chain("pool", "reshape", "dropout", "weight")) == []


def test_unknown_ops_stop_the_walk():
    assert codes(chain("dropout", "other", "batchnorm")) == []


def test_rules_are_linear_on_long_chains():
    n = 20000
    kinds = ["dropout", "activation"] * (n // 2) + ["batchnorm"]
    g = chain(*kinds)
    hits = codes(g)
    assert len(hits) == n // 2 and all(code == "BNL101" for code, _ in hits)


def test_rule_docs_follow_the_schema_and_rules_import_no_torch():
    for rule in all_rules():
        for heading in DOC_HEADINGS:
            assert heading in rule.doc, (rule.code, heading)
        assert rule.summary and rule.name == rule.name.lower()
        if rule.kind is RuleKind.GRAPH:
            assert rule.check is not None
    # the registry and the rules are torch-free:
    import subprocess

    proc = subprocess.run([sys.executable, "-c", "import sys; from bnlint.registry import all_rules; all_rules(); "
                           "import bnlint.model.graphwalk; print('torch' in sys.modules)"], capture_output=True, text=True)
    assert proc.stdout.strip() == "False", proc.stderr
