"""bnlint's rules, one file per rule. Each file defines ``RULE`` (a ``bnlint.rule.Rule``)
whose docstring is the rule's documentation. This folder is installed as
``bnlint.rules``."""
