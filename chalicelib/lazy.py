"""The one mechanism for imports that wait for first use (cold start: README "Cold start").

A Lambda container imports app.py before its first invocation, and every function of this app imports
the same handler module. So a module that only some invocations need (an SDK, an adapter, the X-Ray
SDK) is bound with ``lazy.module`` instead of an import statement, and is imported the first time one
of its attributes is read::

    if TYPE_CHECKING:
        from chalicelib.adapters import redis_cache  # what mypy and the layering test see
    else:
        redis_cache = lazy.module("chalicelib.adapters.redis_cache")

The ``TYPE_CHECKING`` import keeps full typing and keeps the dependency visible to
tests/unit/test_layering.py (which reads import statements, these included); at run time the name is a
proxy. Where it is used: the container (the composition root builds adapters on first use, so their SDKs
load then), ``auth`` (jwt and its crypto backend: first token verified), ``bootstrap`` (Secrets
Manager's adapter), the Yahoo adapter (yfinance and pandas), ``app`` and ``ws_api`` (the AsyncAPI
document and the WebSocket message models, which REST routes never use). Modules every invocation needs
are imported normally: deferring them would only move the same cost into the first request. (The X-Ray
SDK is deferred otherwise: Powertools imports it when a Tracer is constructed, so ``observability``
constructs the tracer on the first traced request.)
"""

from __future__ import annotations

import importlib
import threading
import types
from typing import Any


class LazyModule(types.ModuleType):
    """A stand-in for a module, imported (once, thread-safely) when an attribute is first read."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._lazy_lock = threading.Lock()
        self._lazy_target: types.ModuleType | None = None

    def _lazy_load(self) -> types.ModuleType:
        target = self._lazy_target
        if target is None:
            with self._lazy_lock:
                target = self._lazy_target
                if target is None:
                    target = importlib.import_module(self.__name__)
                    self._lazy_target = target
        return target

    @property
    def loaded(self) -> bool:
        return self._lazy_target is not None

    def __getattr__(self, attribute: str) -> Any:
        # Only called for attributes the stand-in itself lacks, i.e. the module's own names.
        if attribute.startswith("_lazy"):
            raise AttributeError(attribute)
        return getattr(self._lazy_load(), attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self.__name__!r} ({'loaded' if self.loaded else 'not loaded yet'})>"


def module(name: str) -> Any:
    """A proxy for the module ``name``; nothing is imported until one of its attributes is read."""
    return LazyModule(name)
