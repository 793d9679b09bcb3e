"""Deep size of an object graph in bytes: what a cache really costs, not what `getsizeof` says.

Counts every object reachable through containers, instance dictionaries and slots once (by id),
numpy arrays by their buffer (`nbytes`, views once per base). Modules, classes and functions are
not followed: they are code, shared by everything, not per-machine state.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np

_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def deep_size(root: object) -> int:
    """Bytes held by `root` and everything it reaches (see the module's docstring)."""
    seen: set[int] = set()
    stack: list[Any] = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if isinstance(obj, _SKIP) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            base = obj if obj.base is None else obj.base
            total += sys.getsizeof(obj) - (obj.nbytes if obj.base is None else 0)
            if id(base) not in seen or base is obj:
                seen.add(id(base))
                total += int(obj.nbytes if base is obj else getattr(base, "nbytes", 0))
            continue
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, (str, bytes, int, float, bool)) or obj is None:
            continue
        else:
            if hasattr(obj, "__dict__"):
                stack.append(vars(obj))
            for cls in type(obj).__mro__:
                names = getattr(cls, "__slots__", ())
                stack.extend(getattr(obj, n) for n in names if hasattr(obj, n))
    return total
