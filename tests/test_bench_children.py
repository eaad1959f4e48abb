"""bench/children.py: a benchmark's children do not outlive it, even when it is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

# a parent that starts a child calling die_with_parent (or not), prints the child's pid, then sleeps
_PARENT = """
import multiprocessing as mp, sys, time
sys.path.insert(0, {bench!r})
from children import die_with_parent

def child(guard, ready):
    if guard:
        die_with_parent()
    ready.set()
    time.sleep(120)

if __name__ == "__main__":
    c = mp.get_context({ctx!r})
    ready = c.Event()
    p = c.Process(target=child, args=({guard}, ready))
    p.start()
    ready.wait(60)  # the child has called prctl
    print(p.pid, flush=True)
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _run(tmp_path: Path, ctx: str, guard: bool, polls: int = 200) -> tuple[int, bool]:
    script = tmp_path / "parent.py"
    script.write_text(_PARENT.format(bench=str(BENCH), ctx=ctx, guard=guard))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    gone = False
    for _ in range(polls):  # (200: up to 10 s for the kernel's signal and the child's exit)
        if not _alive(child):
            gone = True
            break
        time.sleep(0.05)
    if not gone:
        os.kill(child, signal.SIGKILL)
    return child, gone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_child_dies_with_a_killed_parent(tmp_path: Path, ctx: str) -> None:
    _, gone = _run(tmp_path, ctx, guard=True)
    assert gone


def test_without_it_the_child_outlives_the_parent(tmp_path: Path) -> None:
    """The control: the same child without die_with_parent is still there (what the bench left before)."""
    _, gone = _run(tmp_path, "fork", guard=False, polls=20)
    assert not gone


def test_exit_on_sigterm_runs_finally(tmp_path: Path) -> None:
    script = tmp_path / "main.py"
    mark = tmp_path / "cleaned"
    script.write_text(
        f"import sys, time\nsys.path.insert(0, {str(BENCH)!r})\nfrom children import exit_on_sigterm\n"
        f"exit_on_sigterm()\ntry:\n    print('ready', flush=True)\n    time.sleep(120)\n"
        f"finally:\n    open({str(mark)!r}, 'w').write('yes')\n")
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 143
    assert mark.read_text() == "yes"
