"""Static analysis of training scripts for single-shuffle idioms (rules BNL2xx).

Layers, each usable on its own (issue #10's rules BNL105/BNL107 and the script fixes
build on them):

- ``layout``: the project a file lives in (root, ``.py`` files, module names, the
  import graph) and the *context* of a set of files: what the analysis must read so a
  file's findings never depend on which other files were named on the command line.
  No parsing, no libcst.
- ``project`` / ``resolve``: parsed files, and names resolved to the project's
  functions, classes, methods and modules by qualified name (imports, relative imports,
  package re-exports, aliases).
- ``roots`` / ``walker`` / ``calls`` / ``dispatch`` / ``kwargs``: the interprocedural
  walk from entry points into plain facts (``facts``): loaders, samplers, permutations,
  seeds, loops, and values that differ by branch.
- ``analysis``: parse + walk + rules; ``scope``: the same for files on disk, over their
  project, with the results cache.

``import bnlint.script`` is cheap (no libcst): the heavy modules load when used.
"""
from __future__ import annotations

__all__ = ["run_script_rules", "analyse_sources", "check_in_project"]


def run_script_rules(sources, rules):
    """Findings of the script rules for ``sources`` taken as one project of their own."""
    from bnlint.script.analysis import run_script_rules as run

    return run(sources, rules)


def analyse_sources(sources):
    """The analysed facts (a ``ScriptContext``) of ``sources`` as one project."""
    from bnlint.script.analysis import analyse_sources as analyse

    return analyse(sources)


def check_in_project(files, rules, **kwargs):
    """Findings of the script rules in ``files`` (on disk), analysed with their project;
    see ``bnlint.script.scope.check_in_project``."""
    from bnlint.script.scope import check_in_project as check

    return check(files, rules, **kwargs)
