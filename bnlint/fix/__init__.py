"""The fixer: fixes are data (``bnlint.findings.Fix`` of text edits), planned by the
rules (script rules) or from the fact graph (``bnlint.fix.modelfix``), applied in one
pass per file (``bnlint.fix.edits``) and checked before any write
(``bnlint.fix.runner``, ``bnlint.fix.equivalence``)."""
