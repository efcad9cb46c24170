"""Find the rules shipped in ``bnlint.rules`` (the top-level ``rules/`` folder)."""
from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from typing import Dict, Iterable, List, Optional, Sequence

from bnlint.rule import Rule

__all__ = ["all_rules", "rule_by_code", "expand_codes", "select_rules", "UnknownRuleError"]


class UnknownRuleError(ValueError):
    """A --select/--ignore entry that names no rule."""


@lru_cache(maxsize=None)
def _load() -> Dict[str, Rule]:
    import bnlint.rules as pkg

    rules: Dict[str, Rule] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{pkg.__name__}.{info.name}")
        rule = getattr(module, "RULE", None)
        if not isinstance(rule, Rule):
            continue
        if rule.code in rules:
            raise RuntimeError(f"two rule files define {rule.code}: {info.name}")
        rules[rule.code] = rule
    return dict(sorted(rules.items()))


def all_rules() -> List[Rule]:
    return list(_load().values())


def rule_by_code(code: str) -> Optional[Rule]:
    code = code.strip().upper()
    rules = _load()
    if code in rules:
        return rules[code]
    for rule in rules.values():
        if rule.name == code.lower():
            return rule
    return None


def expand_codes(entries: Iterable[str]) -> List[str]:
    """Expand codes and prefixes (``BNL1``, ``BNL``, ``ALL``) into rule codes."""
    rules = _load()
    out: List[str] = []
    for raw in entries:
        entry = raw.strip().upper()
        if not entry:
            continue
        if entry == "ALL":
            matched = list(rules)
        else:
            matched = [code for code in rules if code.startswith(entry)]
            if not matched:
                by_name = [r.code for r in rules.values() if r.name == raw.strip().lower()]
                matched = by_name
        if not matched:
            raise UnknownRuleError(
                f"unknown rule selector {raw!r}; run 'bnlint rules' to list the codes"
            )
        for code in matched:
            if code not in out:
                out.append(code)
    return out


def select_rules(
    select: Optional[Sequence[str]] = None,
    ignore: Sequence[str] = (),
    extend_select: Sequence[str] = (),
) -> List[Rule]:
    """The enabled rules: the default set (or ``select``), plus ``extend_select``,
    minus ``ignore``. A more specific ``select`` beats a less specific ``ignore``
    the way ruff does it is not needed here: ignore always wins."""
    rules = _load()
    if select:
        chosen = expand_codes(select)
    else:
        chosen = [code for code, rule in rules.items() if rule.default_enabled]
    for code in expand_codes(extend_select):
        if code not in chosen:
            chosen.append(code)
    ignored = set(expand_codes(ignore))
    return [rules[code] for code in sorted(chosen) if code not in ignored]
