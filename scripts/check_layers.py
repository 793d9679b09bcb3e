"""Fail if a module imports across the layers the architecture forbids (docs/ARCHITECTURE.md).

Between the top-level packages: `diagnosis` is pure (no I/O library, no project package but
itself); `dispatch` may import `diagnosis`, never `telematics`; `simulators` speaks only the wire
contract; nothing imports `telematics`.

Inside `telematics`, the subpackages are layers, bottom up: a module imports its own layer and the
layers below it, never one above. `wire` is pure like `diagnosis`. The modules at the package root
(`service`, `demo`, `__main__`) are the composition root: they may import anything, and nothing
under them imports them. A subpackage missing from `LAYERS` fails the check, so that new code is
placed in a layer on purpose.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IO_LIBS = {"asyncio", "asyncpg", "aiomqtt", "paho", "fastapi", "pydantic", "pydantic_settings",
           "socket", "uvicorn", "starlette", "httpx"}
FORBIDDEN: dict[str, set[str]] = {
    "src/diagnosis": IO_LIBS | {"telematics", "dispatch", "simulators"},
    "src/dispatch": {"telematics", "simulators", "aiomqtt", "paho"},
    "simulators": {"telematics", "diagnosis", "dispatch"},
    "src/telematics/wire": IO_LIBS,
}
# telematics' layers, bottom up.
# Capabilities above `api/` (they bring routers of their own, mounted by `telematics.web`) follow
# it, in the order they may import each other.
LAYERS = ("wire", "base", "store", "ingest", "services", "api",
          "summaries", "maintenance", "notices", "quality", "aemp", "console",
          "firstlook")  # fmt: skip
# Narrower than the rank allows: a layer that may reach only these modules of a lower one.
ONLY: dict[tuple[str, str], set[str]] = {
    ("services", "ingest"): {"telematics.ingest.mqtt"},
}
COMPOSITION_ROOT = "root"


def imported_modules(path: Path, module: str) -> set[str]:
    """Every module `path` imports, relative imports resolved against `module`'s package."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # `from telematics import x` imports the module telematics.x.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT / "src" if path.is_relative_to(ROOT / "src") else ROOT)
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(module: str) -> bool:
    return (ROOT / "src" / Path(*module.split("."))).is_dir()


def layer_of(module: str) -> str | None:
    """The layer of a `telematics` module, COMPOSITION_ROOT for the root's, None if unplaced."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    if (ROOT / "src" / "telematics" / parts[1]).is_dir():
        return parts[1] if parts[1] in LAYERS else None
    return COMPOSITION_ROOT


def telematics_failures() -> list[str]:
    failures = []
    for path in sorted((ROOT / "src" / "telematics").rglob("*.py")):
        module = module_name(path)
        own = layer_of(module)
        if own is None:
            failures.append(f"{module} is in no layer: add its package to LAYERS")
            continue
        if own == COMPOSITION_ROOT:
            continue
        reported: set[str | None] = set()
        for target in sorted(imported_modules(path, module)):
            if target != "telematics" and not target.startswith("telematics."):
                continue
            theirs = layer_of(target)
            if theirs in (None, "package") or theirs == own or theirs in reported:
                continue
            if (own, theirs) in ONLY and is_package(target):
                continue  # `from telematics.ingest import mqtt`: the module names are checked
            reported.add(theirs)
            if own == "package":
                failures.append(f"{module} imports {target}: the package itself imports nothing")
            elif theirs == COMPOSITION_ROOT:
                failures.append(f"{module} imports the composition root ({target})")
            elif LAYERS.index(theirs) > LAYERS.index(own):
                failures.append(f"{module} ({own}) imports {target} ({theirs}, a layer above)")
            elif (own, theirs) in ONLY and not any(
                target == allowed or target.startswith(f"{allowed}.")
                for allowed in ONLY[own, theirs]
            ):
                allowed = ", ".join(sorted(ONLY[own, theirs]))
                failures.append(f"{module} ({own}) imports {target}: of {theirs}, only {allowed}")
    return failures


def main() -> int:
    failures = []
    for folder, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            roots = {name.split(".")[0] for name in imported_modules(path, module_name(path))}
            bad = roots & forbidden
            if bad:
                failures.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    failures += telematics_failures()
    for failure in failures:
        print(f"layer violation: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
