"""Fail if a module imports across the layers the architecture forbids.

diagnosis: pure (no I/O libraries, no project package but itself);
dispatch: may import diagnosis, never telematics; simulators: only the wire contract.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IO_LIBS = {"asyncio", "asyncpg", "aiomqtt", "paho", "fastapi", "pydantic", "socket", "uvicorn",
           "starlette", "httpx"}
FORBIDDEN: dict[str, set[str]] = {
    "src/diagnosis": IO_LIBS | {"telematics", "dispatch", "simulators"},
    "src/dispatch": {"telematics", "simulators", "aiomqtt", "paho"},
    "simulators": {"telematics", "diagnosis", "dispatch"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def main() -> int:
    failures = []
    for folder, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            bad = imported_roots(path) & forbidden
            if bad:
                failures.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(bad))}")
    for failure in failures:
        print(f"layer violation: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
