"""Lazy re-exports for package ``__init__`` modules (PEP 562 module ``__getattr__``).

A package names each public object with the submodule that defines it; the submodule is
imported the first time the name is read. ``import wattserve.serve`` therefore stays cheap
(no FastAPI, aiohttp, torch or device probes) while ``from wattserve.serve import
create_app`` works as if the name were imported eagerly.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` from ``{submodule: (name, ...)}``.

    A resolved name is stored on the package, so later reads are plain attribute lookups.
    Unknown names raise ``AttributeError``, which lets ``from package import submodule``
    fall back to importing the submodule as usual.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:  # noqa: N807 - the PEP 562 hook's own name
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807 - the PEP 562 hook's own name
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
