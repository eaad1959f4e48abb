"""Workflows: whole pipelines over the domain packages, shared by the CLI, the HTTP service, the demo
and notebooks.

A workflow takes plain arguments (a :class:`~citytwin.foundation.workspace.Workspace`, paths,
parameters), reads its inputs through the foundation, calls the domain packages (pure functions),
writes what it is asked to write, and returns a small result object (a dataclass holding the
frames and paths a caller shows). It never prints, and it raises
:class:`~citytwin.foundation.errors.CitytwinError` / :class:`~citytwin.foundation.errors.InputError`
on bad input. Layers: ``foundation`` <- domain packages <- ``workflows`` <- ``cli``, ``service``, ``demo``.

Modules (one concern each; import the one you need, this package imports none of them):

- :mod:`citytwin.workflows.common`: a workspace given as an object or a folder
- :mod:`citytwin.workflows.economy`: composite index and HTML report (B1-B3), openness facts (A6)
- :mod:`citytwin.workflows.disparity`: disparity decompositions and dynamics by period (B4)
- :mod:`citytwin.workflows.spatial`: spatial inputs, storing results, the D1-D6 HTML report
- :mod:`citytwin.workflows.twin`: observations, daily AQI, AQI alerts, history, forecasts (F1-F4)
- :mod:`citytwin.workflows.runtime`: the live twin's runtime wiring (stores, parser, ingest, MQTT, alert hub)
- :mod:`citytwin.workflows.demo`: the demo workspace
"""

from __future__ import annotations

__all__: list[str] = []
