"""The layers hold: nothing but the CLI imports the CLI, the CLI's command tree imports no heavy
library (start-up), no import cycle between cli.foundation and cli.main, one --json option."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import typer

SRC = Path(__file__).resolve().parents[2] / "src" / "citytwin"
HEAVY = ("pandas", "duckdb", "geopandas", "numba", "mapclassify", "fastapi", "pyarrow", "shapely", "scipy",
         "libpysal", "osmnx")


def _imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative imports resolved against its package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def test_no_module_outside_the_cli_imports_the_cli() -> None:
    offenders = {}
    for path in SRC.rglob("*.py"):
        mod = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        if mod == "citytwin.cli" or mod.startswith("citytwin.cli."):
            continue
        bad = sorted(m for m in _imports(path) if m == "citytwin.cli" or m.startswith("citytwin.cli."))
        if bad:
            offenders[mod] = bad
    assert offenders == {}
    # the scan sees imports inside functions too (the demo once imported the CLI's spatial report there)
    assert "citytwin.workflows.spatial" in _imports(SRC / "workflows" / "demo.py")


def test_workflows_and_lower_layers_do_not_import_the_service() -> None:
    """The service (HTTP) sits on the workflows: no workflow, domain or foundation module imports it (the
    twin runtime once imported the service's alert hub and forecasting steps)."""
    offenders = {}
    for path in SRC.rglob("*.py"):
        mod = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        top = mod.split(".")[1] if "." in mod else ""
        if top in ("service", "cli", "demo", "__init__", "__main__"):
            continue
        bad = sorted(m for m in _imports(path) if m == "citytwin.service" or m.startswith("citytwin.service."))
        if bad:
            offenders[mod] = bad
    assert offenders == {}
    # the scan is not vacuous: the service's routes do import the workflows' hub
    assert "citytwin.workflows.alerting" in _imports(SRC / "service" / "alerting.py")


def test_cli_foundation_does_not_import_cli_main() -> None:
    assert not any(m.startswith("citytwin.cli.main") for m in _imports(SRC / "cli" / "foundation.py"))
    # run as a module (the twin's fault test starts `python -m citytwin.cli.main twin ingest`)
    r = subprocess.run([sys.executable, "-m", "citytwin.cli.main", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ingest" in r.stdout and "catalog" in r.stdout and "economy" in r.stdout


def test_command_tree_imports_no_heavy_library() -> None:
    """`citytwin --help` builds the whole command tree; it must not pay for pandas, DuckDB, GeoPandas,
    numba (mapclassify's compilation alone took ~5.6 s), FastAPI, ... (checked, not timed)."""
    code = ("import sys, json, citytwin.cli.main\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


def test_workflow_modules_import_lazily() -> None:
    """Importing a workflow module costs nothing heavy either (notebooks and the CLI import them freely);
    the runtime is the exception: it wires stores, the alert hub and MQTT."""
    code = ("import sys, json\n"
            "import citytwin.workflows.economy, citytwin.workflows.disparity, citytwin.workflows.spatial\n"
            "import citytwin.workflows.twin, citytwin.workflows.demo, citytwin.demo\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


def test_environment_names_match_the_workspace() -> None:
    from citytwin.cli import common
    from citytwin.foundation import workspace

    assert (common.ENV_WORKSPACE, common.ENV_USER) == (workspace.ENV_WORKSPACE, workspace.ENV_USER)


def test_every_json_option_is_the_shared_one() -> None:
    """One `--json` option (cli.common.JsonOpt), always the parameter `as_json`, so that handle_errors
    prints errors of a --json call as JSON."""
    from citytwin.cli.main import app

    cmd = typer.main.get_command(app)
    seen = 0

    def walk(c, path):
        nonlocal seen
        for sub_name, sub in getattr(c, "commands", {}).items():
            walk(sub, [*path, sub_name])
        for p in c.params:
            if "--json" in getattr(p, "opts", []):
                seen += 1
                assert p.name == "as_json", path
                assert p.help == "Print JSON instead of a table.", path

    walk(cmd, [])
    assert seen >= 15
    src = "\n".join(p.read_text(encoding="utf-8") for p in (SRC / "cli").glob("*.py"))
    assert src.count('typer.Option("--json"') == 1


def test_error_messages_do_not_depend_on_the_terminal_width(tmp_path: Path) -> None:
    """A clean clone once failed a test because rich wrapped an error at 80 columns: errors are one line."""
    import os

    long_name = "x" * 150
    env = {**os.environ, "COLUMNS": "40"}
    cli = [sys.executable, "-m", "citytwin.cli.main"]
    subprocess.run([*cli, "init", str(tmp_path / "ws")], capture_output=True, timeout=120, check=True)
    r = subprocess.run([*cli, "catalog", "show", long_name, "-w", str(tmp_path / "ws")], capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 2
    assert any(long_name in line for line in r.stderr.splitlines()), r.stderr
