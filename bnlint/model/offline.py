"""No network while models are built: downloads fail at once with ``NetworkBlocked``,
and a factory that failed that way is built again without pretrained weights.

Runs inside the worker subprocess only. ``block_network`` patches the socket layer
(connections to internet addresses and name lookups), ``urllib.request.urlopen`` and
torch.hub's download helpers; requests, httpx and the Hugging Face hub fail through
the socket layer (and are told to stay offline by their environment variables).
"""
from __future__ import annotations

import inspect
import os
import re
import socket
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

__all__ = ["NetworkBlocked", "block_network", "build_without_downloads", "download_error", "OFFLINE_PARAMETERS"]

# Parameters a factory may take to skip pretrained weights, and the value that does:
# pretrained, pretrained_backbone, use_pretrained, encoder_pretrained, ... -> False;
# weights, weights_backbone, pretrained_path -> None.
OFFLINE_PARAMETERS: Tuple[Tuple[str, Any], ...] = (
    (r"pretrained_(path|file|url|ckpt|checkpoint|weights)", None),
    (r"((use|load)_)?pretrained(_\w+)?|\w+_pretrained", False), (r"weights(_backbone|_encoder)?", None),
)
_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


class NetworkBlocked(ConnectionError):
    """bnlint's worker refused a network access (model construction never downloads)."""

    def __init__(self, what: str):
        super().__init__(f"bnlint blocks network access while building models: {what}")
        self.what = what


def _refuse(what: str):
    raise NetworkBlocked(what)


def _is_internet(family: Any) -> bool:
    return family in (socket.AF_INET, socket.AF_INET6)


def block_network() -> None:
    """Make every download in this process fail at once (idempotent)."""
    if getattr(socket, "_bnlint_blocked", False):
        return
    socket._bnlint_blocked = True  # type: ignore[attr-defined]
    os.environ.update(_OFFLINE_ENV)

    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def connect(self, address):
        if _is_internet(self.family):
            _refuse(f"connection to {address!r}")
        return original_connect(self, address)

    def connect_ex(self, address):
        if _is_internet(self.family):
            _refuse(f"connection to {address!r}")
        return original_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        _refuse(f"name lookup of {host!r}")

    def create_connection(address, *args, **kwargs):
        _refuse(f"connection to {address!r}")

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    socket.create_connection = create_connection

    import urllib.request

    def urlopen(url, *args, **kwargs):
        _refuse(f"download of {getattr(url, 'full_url', url)}")

    urllib.request.urlopen = urlopen

    try:
        import torch.hub
        import torch.utils.model_zoo
    except ImportError:  # pragma: no cover - torch is always there in the worker
        return

    def load_state_dict_from_url(url, *args, **kwargs):
        _refuse(f"download of {url}")

    def download_url_to_file(url, *args, **kwargs):
        _refuse(f"download of {url}")

    original_hub_load = torch.hub.load

    def hub_load(repo_or_dir, model, *args, source="github", **kwargs):
        if source != "local":
            _refuse(f"torch.hub.load of {repo_or_dir}")
        return original_hub_load(repo_or_dir, model, *args, source=source, **kwargs)

    torch.hub.load_state_dict_from_url = load_state_dict_from_url
    torch.hub.download_url_to_file = download_url_to_file
    torch.hub.load = hub_load
    torch.utils.model_zoo.load_url = load_state_dict_from_url


def exception_chain(exc: BaseException, wrapped: bool = False) -> Iterator[BaseException]:
    """``exc`` and the exceptions behind it (``__cause__``, ``__context__``; with
    ``wrapped`` also an exception kept as ``reason`` or in ``args``, as urllib and
    libraries wrap them), each once, depth first, at most about 50."""
    seen = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen or len(seen) > 50:
            continue
        seen.add(id(e))
        yield e
        todo.extend([e.__cause__, e.__context__])
        if wrapped:
            reason = getattr(e, "reason", None)
            if isinstance(reason, BaseException):
                todo.append(reason)
            todo.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))


def download_error(exc: BaseException) -> Optional[NetworkBlocked]:
    """The ``NetworkBlocked`` behind ``exc`` (libraries wrap it), if any."""
    return next((e for e in exception_chain(exc, wrapped=True) if isinstance(e, NetworkBlocked)), None)


def _offline_arguments(factory: Callable) -> Dict[str, Any]:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    out = {}
    for name in params:
        for pattern, value in OFFLINE_PARAMETERS:
            if re.fullmatch(pattern, name):
                out[name] = value
                break
    return out


def build_without_downloads(factory: Callable, args: tuple, kwargs: dict) -> Tuple[Any, Optional[str]]:
    """``factory(*args, **kwargs)``; when that needs a download and the factory takes
    ``pretrained``/``weights``, built again with ``pretrained=False``/``weights=None``.
    Returns (model, note saying so or None); other errors propagate."""
    try:
        return factory(*args, **kwargs), None
    except Exception as exc:
        blocked = download_error(exc)
        missing_weights = blocked is None and _missing_weights_file(exc)
        offline = _offline_arguments(factory) if (blocked is not None or missing_weights) else {}
        if not offline:
            raise
        try:
            bound = inspect.signature(factory).bind_partial(*args, **kwargs)
        except TypeError:
            raise exc from None
        bound.arguments.update(offline)
        model = factory(*bound.args, **bound.kwargs)
        values = ", ".join(f"{k}={v!r}" for k, v in offline.items())
        if blocked is None:
            return model, (f"built with {values}: with its defaults it loads weights from a file that is not "
                           f"there ({exc}); weights do not change the checked graph")
        return model, (f"built with {values}: with its defaults it needs a network access ({blocked.what}), "
                       f"and bnlint never downloads (weights do not change the checked graph)")


def _missing_weights_file(exc: BaseException) -> bool:
    """A checkpoint the factory loads is not on disk (``torch.load(...)`` of a file the
    repository does not ship): for a ``pretrained``-style factory, build it without."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, FileNotFoundError):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
