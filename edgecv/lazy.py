"""Lazy package attributes (PEP 562): a package's public names are imported from their module on first use,
so that importing the package stays light (no TensorFlow, no Keras)."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_attributes(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``table`` maps each lazy name to the module that defines it.

    Usage, in a package's ``__init__.py``: ``__getattr__ = lazy_attributes(__name__, {"quantize": "edgecv.conversion.api"})``.
    """

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
