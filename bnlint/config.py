"""``[tool.bnlint]`` configuration from the nearest pyproject.toml, overridden by flags.

The nearest ``pyproject.toml`` *with a* ``[tool.bnlint]`` *table*, searched upward
from the first checked path, is used (ruff does the same with ``[tool.ruff]``);
``--config FILE`` names one directly (a ``pyproject.toml``, or a ``bnlint.toml`` whose
keys sit at the top level). Unknown keys and bad values raise ``ConfigError`` naming
the key and the file; the CLI prints it on one line and exits 2.
"""
from __future__ import annotations

import difflib
import fnmatch
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older Pythons only
    import tomli as tomllib

__all__ = [
    "Config", "ConfigError", "load_config", "find_pyproject", "config_from_table",
    "parse_input_shape", "merge_flags",
]


class ConfigError(ValueError):
    """A configuration problem the user must fix (exit code 2)."""


@dataclass(frozen=True)
class Config:
    select: Optional[Tuple[str, ...]] = None
    ignore: Tuple[str, ...] = ()
    extend_select: Tuple[str, ...] = ()
    per_file_ignores: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()
    exclude: Tuple[str, ...] = ()
    models: Tuple[str, ...] = ()
    input_shape: Optional[Tuple[Tuple[int, ...], ...]] = None
    timeout: float = 60.0
    unsafe_fixes: bool = False
    mock_imports: Tuple[str, ...] = ()  # packages replaced by stand-ins even when installed
    no_mock_imports: Tuple[str, ...] = ()  # packages never replaced ("*": no stand-ins at all)
    source: Optional[str] = None  # the pyproject.toml it came from
    root: Optional[str] = None  # its folder: relative config paths are resolved here

    def with_overrides(self, **kwargs: Any) -> "Config":
        return replace(self, **{k: v for k, v in kwargs.items() if v is not None})

    def per_file_ignored_codes(self, path: str) -> Tuple[str, ...]:
        """Codes/prefixes ignored for ``path`` by ``per-file-ignores``. Globs match the
        path as given, its file name, and the path relative to the config's folder."""
        if not self.per_file_ignores:
            return ()
        candidates = {Path(path).as_posix(), Path(path).name}
        if self.root:
            try:
                candidates.add(Path(os.path.abspath(path)).relative_to(Path(self.root).resolve()).as_posix())
            except ValueError:
                pass
        out = []
        for glob, codes in self.per_file_ignores:
            if any(fnmatch.fnmatch(c, glob) for c in candidates):
                out.extend(codes)
        return tuple(out)


_KEYS = (
    "select", "ignore", "extend-select", "per-file-ignores", "exclude", "models",
    "input-shape", "timeout", "unsafe-fixes", "mock-imports", "no-mock-imports",
)


def _where(source: Optional[str]) -> str:
    return f" in {source}" if source else ""


def _str_list(key: str, value: Any, source: Optional[str]) -> Tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"[tool.bnlint] {key}{_where(source)} must be a list of strings, got {value!r}")


def _module_names(key: str, value: Any, source: Optional[str], star: bool) -> Tuple[str, ...]:
    """Top-level package names (``apex``, ``wandb``); ``"*"`` where ``star`` allows it."""
    names = _str_list(key, value, source)
    for name in names:
        if star and name == "*":
            continue
        if not all(part.isidentifier() for part in name.split(".")) or "." in name:
            every = '; "*" means every package' if star else ""
            raise ConfigError(
                f"[tool.bnlint] {key}{_where(source)}: {name!r} is not a top-level package name "
                f"(write 'apex', not 'apex.amp'){every}"
            )
        if name == "torch":
            raise ConfigError(f"[tool.bnlint] {key}{_where(source)}: torch is never replaced by a stand-in")
    return names


def _rule_selectors(key: str, value: Any, source: Optional[str]) -> Tuple[str, ...]:
    """A list of codes/prefixes/names that must each name at least one rule."""
    from bnlint.registry import UnknownRuleError, expand_codes

    codes = _str_list(key, value, source)
    for code in codes:
        if code.strip().upper() == "ALL":
            continue
        try:
            expand_codes([code])
        except UnknownRuleError:
            raise ConfigError(
                f"[tool.bnlint] {key}{_where(source)}: {code!r} names no rule; "
                f"run 'bnlint rules' to list the codes"
            ) from None
    return codes


def parse_input_shape(key: str, value: Any) -> Tuple[Tuple[int, ...], ...]:
    """``[2, 3, 32, 32]`` (one input) or ``[[2, 3, 32, 32], [2, 10]]`` (several)."""
    def is_shape(v: Any) -> bool:
        return isinstance(v, (list, tuple)) and len(v) > 0 and all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in v
        )

    if is_shape(value):
        return (tuple(value),)
    if isinstance(value, (list, tuple)) and value and all(is_shape(v) for v in value):
        return tuple(tuple(v) for v in value)
    raise ConfigError(
        f"{key} must be a shape like [2, 3, 32, 32] or a list of shapes, got {value!r}"
    )


def _unknown_key(key: str, source: Optional[str]) -> ConfigError:
    close = difflib.get_close_matches(key, _KEYS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(_KEYS)}"
    return ConfigError(f"unknown key {key!r} in [tool.bnlint]{_where(source)}{hint}")


def config_from_table(table: Dict[str, Any], source: Optional[str] = None) -> Config:
    """Validate a ``[tool.bnlint]`` table and turn it into a ``Config``."""
    for key in table:
        if key not in _KEYS:
            raise _unknown_key(key, source)
    kwargs: Dict[str, Any] = {"source": source, "root": str(Path(source).resolve().parent) if source else None}
    for key, attr in (("select", "select"), ("ignore", "ignore"), ("extend-select", "extend_select")):
        if key in table:
            kwargs[attr] = _rule_selectors(key, table[key], source)
    if "exclude" in table:
        kwargs["exclude"] = _str_list("exclude", table["exclude"], source)
    if "models" in table:
        models = _str_list("models", table["models"], source)
        for entry in models:
            if "::" not in entry:
                raise ConfigError(
                    f"[tool.bnlint] models{_where(source)}: {entry!r} must look like "
                    f"'path.py::Name' or 'path.py::Name(arg=1)'"
                )
        kwargs["models"] = models
    if "per-file-ignores" in table:
        pfi = table["per-file-ignores"]
        if not isinstance(pfi, dict):
            raise ConfigError(
                f"[tool.bnlint] per-file-ignores{_where(source)} must be a table of "
                f'"glob" = ["CODE", ...], got {pfi!r}'
            )
        from bnlint.registry import expand_codes

        # Stored as rule codes, so that names and prefixes both work.
        kwargs["per_file_ignores"] = tuple(
            (glob, tuple(expand_codes(_rule_selectors(f"per-file-ignores.{glob!r}", codes, source))))
            for glob, codes in pfi.items()
        )
    if "input-shape" in table:
        kwargs["input_shape"] = parse_input_shape(f"[tool.bnlint] input-shape{_where(source)}", table["input-shape"])
    if "timeout" in table:
        t = table["timeout"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0:
            raise ConfigError(f"[tool.bnlint] timeout{_where(source)} must be a positive number of seconds, got {t!r}")
        kwargs["timeout"] = float(t)
    if "mock-imports" in table:
        kwargs["mock_imports"] = _module_names("mock-imports", table["mock-imports"], source, star=False)
    if "no-mock-imports" in table:
        kwargs["no_mock_imports"] = _module_names("no-mock-imports", table["no-mock-imports"], source, star=True)
    both = sorted(set(kwargs.get("mock_imports", ())) & set(kwargs.get("no_mock_imports", ())))
    if both:
        raise ConfigError(
            f"[tool.bnlint]{_where(source)}: {both[0]!r} is in both mock-imports and no-mock-imports; keep one"
        )
    if "unsafe-fixes" in table:
        if not isinstance(table["unsafe-fixes"], bool):
            raise ConfigError(
                f"[tool.bnlint] unsafe-fixes{_where(source)} must be true or false, got {table['unsafe-fixes']!r}"
            )
        kwargs["unsafe_fixes"] = table["unsafe-fixes"]
    return Config(**kwargs)


def _read_toml(path: Path) -> Dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"could not read {path}: {exc}") from None


def _bnlint_table(data: Dict[str, Any], path: Path) -> Optional[Dict[str, Any]]:
    tool = data.get("tool", {})
    table = tool.get("bnlint") if isinstance(tool, dict) else None
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"[tool.bnlint] in {path} must be a table")
    return table


def find_pyproject(start: Path) -> Optional[Path]:
    """The nearest ``pyproject.toml`` at or above ``start`` that has ``[tool.bnlint]``."""
    start = start.resolve()
    if start.is_file():
        start = start.parent
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and _bnlint_table(_read_toml(candidate), candidate) is not None:
            return candidate
    return None


def load_config(paths: Sequence[str], config_file: Optional[str] = None) -> Config:
    """Config from ``config_file`` or the nearest pyproject.toml above the first path."""
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {config_file} does not exist")
        data = _read_toml(path)
        table = _bnlint_table(data, path)
        if table is None:
            if path.name == "pyproject.toml":
                raise ConfigError(f"{config_file} has no [tool.bnlint] table")
            table = data  # a bnlint.toml: the keys sit at the top level
        return config_from_table(table, source=str(path))
    first = paths[0].split("::", 1)[0] if paths else "."
    start = Path(first) if os.path.exists(first) else Path(".")
    found = find_pyproject(start)
    if found is None:
        return Config()
    rel = os.path.relpath(found)
    shown = rel if not rel.startswith("..") else str(found)
    return config_from_table(_bnlint_table(_read_toml(found), found) or {}, source=shown)


def merge_flags(config: Config, select: Sequence[str] = (), ignore: Sequence[str] = (),
                extend_select: Sequence[str] = ()) -> Config:
    """Apply command-line rule selection on top of the file's, the way ruff layers
    them: ``--select`` starts a new selection (the file's ``select``, ``extend-select``
    and ``ignore`` no longer apply), ``--extend-select`` and ``--ignore`` add to it."""
    select, ignore, extend_select = tuple(select), tuple(ignore), tuple(extend_select)
    if select:
        return replace(config, select=select, ignore=ignore, extend_select=extend_select)
    return replace(config, ignore=config.ignore + ignore, extend_select=config.extend_select + extend_select)
