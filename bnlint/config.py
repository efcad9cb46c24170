"""``[tool.bnlint]`` configuration from the nearest pyproject.toml, overridden by flags."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older Pythons only
    import tomli as tomllib

__all__ = ["Config", "ConfigError", "load_config", "find_pyproject"]


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
    source: Optional[str] = None  # the pyproject.toml it came from
    root: Optional[str] = None  # its folder: relative config paths are resolved here

    def with_overrides(self, **kwargs: Any) -> "Config":
        return replace(self, **{k: v for k, v in kwargs.items() if v is not None})


def _str_list(key: str, value: Any) -> Tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ConfigError(f"[tool.bnlint] {key} must be a list of strings, got {value!r}")


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


_KEYS = {
    "select", "ignore", "extend-select", "per-file-ignores", "exclude", "models",
    "input-shape", "timeout", "unsafe-fixes",
}


def config_from_table(table: Dict[str, Any], source: Optional[str] = None) -> Config:
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in [tool.bnlint]"
            + (f" of {source}" if source else "")
            + f"; known keys: {', '.join(sorted(_KEYS))}"
        )
    kwargs: Dict[str, Any] = {"source": source, "root": str(Path(source).parent) if source else None}
    if "select" in table:
        kwargs["select"] = _str_list("select", table["select"])
    if "ignore" in table:
        kwargs["ignore"] = _str_list("ignore", table["ignore"])
    if "extend-select" in table:
        kwargs["extend_select"] = _str_list("extend-select", table["extend-select"])
    if "exclude" in table:
        kwargs["exclude"] = _str_list("exclude", table["exclude"])
    if "models" in table:
        kwargs["models"] = _str_list("models", table["models"])
    if "per-file-ignores" in table:
        pfi = table["per-file-ignores"]
        if not isinstance(pfi, dict):
            raise ConfigError("[tool.bnlint] per-file-ignores must be a table of glob = [codes]")
        kwargs["per_file_ignores"] = tuple(
            (glob, _str_list(f"per-file-ignores.{glob}", codes)) for glob, codes in pfi.items()
        )
    if "input-shape" in table:
        kwargs["input_shape"] = parse_input_shape("[tool.bnlint] input-shape", table["input-shape"])
    if "timeout" in table:
        t = table["timeout"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0:
            raise ConfigError(f"[tool.bnlint] timeout must be a positive number of seconds, got {t!r}")
        kwargs["timeout"] = float(t)
    if "unsafe-fixes" in table:
        if not isinstance(table["unsafe-fixes"], bool):
            raise ConfigError("[tool.bnlint] unsafe-fixes must be true or false")
        kwargs["unsafe_fixes"] = table["unsafe-fixes"]
    return Config(**kwargs)


def find_pyproject(start: Path) -> Optional[Path]:
    start = start.resolve()
    if start.is_file():
        start = start.parent
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(paths: Sequence[str], config_file: Optional[str] = None) -> Config:
    """Config from ``config_file`` or the nearest pyproject.toml above the first path."""
    if config_file:
        path: Optional[Path] = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {config_file} does not exist")
    else:
        first = paths[0].split("::", 1)[0] if paths else "."
        start = Path(first) if os.path.exists(first) else Path(".")
        path = find_pyproject(start)
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"could not read {path}: {exc}") from None
    table = data.get("tool", {}).get("bnlint")
    if table is None:
        return Config(source=None, root=str(path.parent))
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.bnlint] in {path} must be a table")
    return config_from_table(table, source=str(path))
