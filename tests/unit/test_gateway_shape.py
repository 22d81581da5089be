"""The gateway's API keeps the shape issue 10 gave it: one router per resource, every
route short enough to read at once (<= 40 lines), and no SQL outside queries.py (routes
and dependencies call named query functions)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from services.gateway.routes import admin, auth, exports, health, patients, review, sessions, streams

GATEWAY = Path(__file__).resolve().parents[2] / "services" / "gateway"
RESOURCES = (health, auth, admin, patients, sessions, exports, streams, review)
MAX_ROUTE_LINES = 40


def _endpoints():
    for module in RESOURCES:
        for route in module.router.routes:
            yield module.__name__, getattr(route, "path", "?"), route.endpoint


def test_every_resource_has_routes():
    assert all(module.router.routes for module in RESOURCES)


def test_no_route_over_40_lines():
    too_long = {}
    for module, path, endpoint in _endpoints():
        lines, _ = inspect.getsourcelines(endpoint)  # decorators included
        if len(lines) > MAX_ROUTE_LINES:
            too_long[f"{module}:{path}"] = len(lines)
    assert not too_long, too_long


def _imports_sqlalchemy(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        if any(name == "sqlalchemy" or name.startswith("sqlalchemy.") for name in names):
            node_is_session_type = isinstance(node, ast.ImportFrom) and node.module == "sqlalchemy.ext.asyncio"
            if not node_is_session_type:
                return True
    return False


def test_sql_lives_in_queries_only():
    modules = [*(GATEWAY / "routes").glob("*.py"), GATEWAY / "deps.py", GATEWAY / "readmodel.py", GATEWAY / "main.py"]
    offenders = [p.name for p in modules if _imports_sqlalchemy(p)]
    assert not offenders, offenders
    assert _imports_sqlalchemy(GATEWAY / "queries.py")  # the check itself can see an import
