"""Click usage errors (missing, unknown or badly typed options and arguments, unknown commands) under
``--json``: one JSON error object on stdout naming the command and the parameter, exit code 2, for
every command (the root group does it once: ``cli.common.JsonUsageGroup``); without ``--json`` Click's
own message on stderr, no traceback. Consoles are fixed wide (``CLI_ENV``) or, for the real entry
point, 40 columns: nothing here depends on the terminal's width.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from citytwin.cli.main import app

runner = CliRunner()

# (command line without --json, parameter the error names, words of the message)
CASES = [
    (["ingest", "x.csv", "-s", "poi"], "--dataset", "Missing option"),
    (["ingest"], "files", "Missing argument"),
    (["ingest", "x.csv", "-d", "a", "-s", "poi", "--bogus"], "--bogus", "No such option"),
    (["plan", "conflicts", "--layer", "a=b", "--out", "o"], "--rules", "Missing option"),
    (["plan", "conflicts", "--layer", "a=b", "--rules", "r", "--out", "o", "--overlap-tolerance", "abc"],
     "--overlap-tolerance", "Invalid value"),
    (["plan", "conflicts", "--nope"], "--nope", "No such option"),
    (["sim", "run", "scen"], "--out", "Missing option"),
    (["sim", "run", "scen", "-o", "out", "--seeds", "many"], "--seeds", "Invalid value"),
    (["twin", "devices", "credentials"], "name", "Missing argument"),
    (["twin", "devices", "credentials", "st1", "--prefx", "a"], "--prefx", "No such option"),
    (["cases", "route", "f.csv", "--text", "t", "-o", "o.csv"], "--model", "Missing option"),
    (["cases", "route", "f.csv", "-m", "m", "--text", "t", "-o", "o.csv", "extra"], None, "unexpected extra argument"),
    (["plan", "nosuch"], None, "No such command"),
    (["--bogus"], "--bogus", "No such option"),
]


def _command(args: list[str]) -> str:
    """The command path the error names: the groups and command before the first option or value."""
    known = {"plan", "conflicts", "sim", "run", "twin", "devices", "credentials", "cases", "route", "ingest"}
    words = []
    for a in args:
        if a not in known:
            break
        words.append(a)
    return " ".join(["citytwin", *words])


@pytest.mark.parametrize(("args", "param", "words"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_usage_error_is_json_with_json(args: list[str], param: str | None, words: str) -> None:
    # --json last, and right after a command that has it (a group has no --json: there it is the unknown option)
    leaf = _command(args) not in ("citytwin", "citytwin plan")
    for at in (len(args), len(_command(args).split()) - 1) if leaf else (len(args),):
        line = [*args[:at], "--json", *args[at:]]
        r = runner.invoke(app, line)
        assert r.exit_code == 2, (line, r.output)
        rec = json.loads(r.stdout)  # the whole of stdout is one JSON object
        assert set(rec) == {"error", "hint", "type", "command", "parameter"}
        assert rec["parameter"] == param and words in rec["error"]
        assert rec["command"] == _command(args) and rec["hint"] == f"see `{rec['command']} --help`"
        assert "Traceback" not in r.output


@pytest.mark.parametrize(("args", "param", "words"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_usage_error_is_clicks_message_without_json(args: list[str], param: str | None, words: str) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and r.stdout == ""
    assert "Usage:" in r.stderr and words in r.stderr and "Traceback" not in r.stderr


def test_json_after_double_dash_is_a_value_not_the_option() -> None:
    r = runner.invoke(app, ["plan", "conflicts", "--nope", "--", "--json"])
    assert r.exit_code == 2 and r.stdout == "" and "No such option" in r.stderr


@pytest.mark.parametrize("args", [["--help"], ["plan", "conflicts", "--help"], ["sim", "run", "--help", "--json"],
                                  ["twin", "devices", "credentials", "--json", "--help"]])
def test_help_still_works(args: list[str]) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "Usage:" in r.stdout and "--help" in r.stdout


def test_citytwin_errors_keep_their_shape_under_json(tmp_path: os.PathLike[str]) -> None:
    # a usage that parses but fails in the command (handle_errors) is unchanged: its own record
    r = runner.invoke(app, ["catalog", "list", "--json", "-w", str(tmp_path) + "/none"])
    assert r.exit_code == 2
    rec = json.loads(r.stdout)
    assert rec["error"] and "command" not in rec


def test_real_entry_point_at_forty_columns() -> None:
    """The installed command, in a 40-column terminal: the same one JSON object, and Click's box without --json."""
    env = {**os.environ, "COLUMNS": "40", "TERMINAL_WIDTH": "40"}
    cmd = [sys.executable, "-c", "from citytwin.cli.main import app; app()"]
    line = ["plan", "conflicts", "--layer", "a=b", "--rules", "r", "--out", "o", "--overlap-tolerance", "abc"]
    p = subprocess.run([*cmd, *line, "--json"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert p.returncode == 2 and p.stderr == ""
    rec = json.loads(p.stdout)
    assert rec["parameter"] == "--overlap-tolerance" and rec["command"].endswith("plan conflicts")
    p = subprocess.run([*cmd, *line], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert p.returncode == 2 and p.stdout == "" and "Usage:" in p.stderr and "Traceback" not in p.stderr
