"""A simulation published into the twin *while it runs* (F5): ``citytwin sim run … --publish NAME --live``.

:func:`run_live` runs :func:`citytwin.workflows.simulation.run` with a :class:`LivePublisher` as its monitor.
Before the first step the scenario's stores ``WORKSPACE/twin/scenarios/NAME/`` are made afresh (a scenario of
that name is replaced) with every edge and detector as an entity, and ``scenario.json`` says
``"status": "running"``. SUMO is then stepped in-process (libsumo) and, each time simulated time crosses an
interval boundary, the intervals SUMO has written so far (its edge data and induction-loop files, read up to
the last complete ``<interval>``) are published through the same validation and
:class:`~citytwin.foundation.timeseries.Ingestor` as :func:`citytwin.workflows.simulation_twin.publish`, so
a client polling ``?scenario=NAME`` sees the observations grow. This happens during every seed: an
interval's values are the mean over the seeds simulated so far (seed 1 alone while the first seed runs,
then the mean of seeds 1 and 2 when the second reaches that interval, and so on; the earlier seeds'
results are kept in memory), and the record says which seed runs (``seed_running`` k of ``len(seeds)``,
``seeds_done``). An interval published again replaces its earlier values (the history keeps the latest
write per entity, attribute and time), so after the last seed every interval is the mean over all seeds, as
in the run folder. When the run ends, the remaining intervals are published and the status becomes
``complete``; the scenario then holds what :func:`~citytwin.workflows.simulation_twin.publish` of the run
folder would (tests compare both). If the
run fails or is interrupted, the status becomes ``failed`` with the error, and what was published stays
readable but marked so (``GET /twin/v1/scenarios``); a publishing process that died without a word (killed)
is reported ``failed`` too, once its process id is gone.

Observation times are ``start`` + the simulated time at each interval's end; by default ``start`` is the
wall-clock time at which the run began (the scenario's own timeline: simulated time runs ahead of the wall
clock, so the twin's check of future times is made against the simulated clock, ``start`` + the interval's end).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.workflows.common import WorkspaceLike, open_ws
from citytwin.workflows.simulation_twin import (
    ENTITY_TYPE,
    _docs,
    _edge_locations,
    check_name,
    detector_entity_id,
    edge_entity_id,
    edge_static,
    run_edge_static,
    scenario_root,
    write_meta,
)

_KEYS = ["begin", "end"]


class _Tail:
    """The intervals SUMO has appended to an output file, read as it grows: each look parses only the complete
    ``<interval>`` elements written since the last one (``closing``: how a complete one ends) and adds them
    to the frame of the intervals so far (``parse``: :func:`~citytwin.workflows.simulation_detectors.edge_intervals`
    or ``detector_intervals``)."""

    def __init__(self, path: Path, closing: bytes, parse: Callable[[ET.Element], pd.DataFrame]) -> None:
        self.path, self.closing, self.parse = path, closing, parse
        self.offset, self.size = 0, -1
        self.frame: pd.DataFrame | None = None

    def read(self) -> pd.DataFrame | None:
        """The intervals written so far (None before the first)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return None
        if size != self.size:
            self.size = size
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
            cut, start = data.rfind(self.closing), data.find(b"<interval")
            if 0 <= start < cut:
                new = self.parse(ET.fromstring(b"<r>" + data[start:cut + len(self.closing)] + b"</r>"))
                self.frame = new if self.frame is None else pd.concat([self.frame, new], ignore_index=True)
                self.offset += cut + len(self.closing)
        return self.frame


class LivePublisher:
    """The monitor of a run (:func:`citytwin.workflows.simulation.run`) that publishes its intervals as they
    are simulated (see the module docstring).

    Parameters
    ----------
    workspace
        The workspace whose twin receives the scenario.
    name
        Scenario name (:func:`~citytwin.workflows.simulation_twin.check_name`).
    start
        ISO 8601 time of simulated time 0 (default: when the run begins).
    now_us
        Wall clock (µs since the epoch), for the default ``start`` and the ``updated`` times.
    on_interval
        Called with the scenario's record after each published interval (progress; tests observe the run).
    """

    def __init__(self, workspace: WorkspaceLike | None, name: str, *, start: str | None = None,
                 now_us: Callable[[], int] | None = None,
                 on_interval: Callable[[dict[str, Any]], None] | None = None) -> None:
        from citytwin.twin.entities import parse_time_us

        self.name = check_name(name)
        self.root = open_ws(workspace).root / "twin"  # as workflows.twin.twin_root
        self.clock = now_us or (lambda: time.time_ns() // 1000)
        try:
            self.start_us = parse_time_us(start) if start is not None else None
        except ValueError as exc:
            raise InputError(f"--start {start!r}: {exc}", field="--start") from None
        self.on_interval = on_interval
        self.stores: Any = None
        self.meta: dict[str, Any] = {}
        # interval end -> (seeds in its published mean, observations accepted at that publish): edges, detectors
        self.published: dict[float, tuple[int, int]] = {}
        self.published_det: dict[float, tuple[int, int]] = {}
        self.seed_published: set[float] = set()  # edge intervals published during the seed that runs
        self.done_iv: list[pd.DataFrame] = []
        self.done_det: list[pd.DataFrame] = []
        self.parser: Any = None
        self.sim_now = 0

    # -- called by simulation.run -----------------------------------------------------------------------
    def begin(self, sc: dict[str, Any], interval: float, seeds: list[int], detectors: bool) -> None:
        """Make the scenario's stores afresh, with every edge (and detector) as an entity; status ``running``."""
        from citytwin.foundation.timeseries import TwinStores
        from citytwin.twin.entities import format_time_us
        from citytwin.workflows.simulation_detectors import detector_places

        net = Path(sc["net"])
        self.locations = _edge_locations(net)
        self.places = detector_places(net) if detectors else {}
        self.interval, self.seeds, self.detectors = interval, list(seeds), detectors
        self.sim_begin = float(sc.get("begin") or 0.0)
        now = self.clock()
        if self.start_us is None:
            self.start_us = now - int(self.sim_begin * 1e6)
        final = scenario_root(self.root, self.name)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # replaced as a whole; the API's cached store is keyed by the new file
            old = final.parent / f".{self.name}.old.{time.time_ns()}"
            final.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        final.mkdir()
        self.folder = final
        self.stores = TwinStores.open(final)
        source = f"citytwin simulation {sc['dir']} (live)"
        for edge, (lon, lat, lanes, shape) in self.locations.items():
            self.stores.state.put_entity(edge_entity_id(self.name, edge), ENTITY_TYPE, lon, lat,
                                         edge_static(self.name, edge, lanes, shape, source))
        for det, (lane, edge, index, lon, lat) in self.places.items():
            self.stores.state.put_entity(detector_entity_id(self.name, det), ENTITY_TYPE, lon, lat,
                                         {"name": det, "refRoadSegment": edge, "laneId": index,
                                          "scenario": self.name, "source": source,
                                          "description": f"induction loop on lane {lane}"})
        self.meta = {"scenario": self.name, "status": "running", "live": True, "run": None, "net": str(net),
                     "seeds": seeds, "seed_running": 1, "seeds_done": 0,
                     "entities": len(self.locations) + len(self.places),
                     "edges": len(self.locations), "detectors": len(self.places), "observations": 0,
                     "intervals_published": 0,
                     "detector_intervals_published": 0, "simulated_s": None, "start": format_time_us(self.start_us),
                     "published": None, "updated": format_time_us(now), "interval_s": interval,
                     "pid": os.getpid(), "host": socket.gethostname()}
        write_meta(final, self.meta)

    def watch(self, seed: int, work: Path) -> Callable[[float], None] | None:
        """The per-step hook of one seed's run: it publishes each interval of this seed once SUMO wrote it, as
        the mean over this seed and the seeds done."""
        from citytwin.twin.entities import format_time_us

        self.seed_published = set()
        self.meta.update({"seed_running": self.seeds.index(seed) + 1, "seeds_done": len(self.done_iv),
                          "simulated_s": None, "updated": format_time_us(self.clock())})
        write_meta(self.folder, self.meta)
        from citytwin.workflows.simulation_detectors import detector_intervals, edge_intervals

        state = {"next": self.sim_begin + self.interval}
        edges = _Tail(work / "edges_traffic.xml", b"</interval>", edge_intervals)
        dets = _Tail(work / "detectors.xml", b"/>\n", detector_intervals)

        def tick(t: float) -> None:
            if t < state["next"]:  # SUMO writes an interval a step or more after its end (buffered):
                return              # from its end on, look at every step until it is there
            iv = edges.read()
            det = dets.read() if self.detectors else None
            if iv is not None:
                self._publish(iv, det, final=False)
            if self.seed_published and max(self.seed_published) >= state["next"] - 1e-9:
                state["next"] = self.sim_begin + (math.floor((t - self.sim_begin) / self.interval) + 1) * self.interval

        return tick

    def seed_done(self, seed: int, iv: pd.DataFrame, det: pd.DataFrame | None) -> None:
        """A seed's complete results: its intervals not yet published (the last is written when SUMO closes)
        are, and the seed is kept for the means of the next seeds."""
        self._publish(iv, det, final=True)
        self.done_iv.append(iv)
        if det is not None:
            self.done_det.append(det)

    # -- called by run_live -------------------------------------------------------------------------------
    def finish(self, summary: dict[str, Any], out: Path) -> dict[str, Any]:
        """Status ``complete``, with the run's record as :func:`~citytwin.workflows.simulation_twin.publish`
        writes it."""
        from citytwin.twin.entities import format_time_us

        if self.stores is not None:  # the run's results per edge over the whole run, as `sim publish` stores them
            for edge, res in run_edge_static(Path(out)).items():
                if edge in self.locations:
                    self.stores.state.put_entity(edge_entity_id(self.name, edge), ENTITY_TYPE, static=res)
        self._close()
        now = format_time_us(self.clock())
        self.meta.update({"status": "complete", "run": str(Path(out).resolve()), "control": summary.get("control"),
                          "seeds": summary.get("seeds"), "seeds_done": len(self.done_iv),
                          "simulated_s": max(self.published, default=None), "published": now, "updated": now,
                          "metrics": {k: summary.get(k) for k in ("mean_travel_time_s", "mean_delay_s",
                                                                  "vehicles_inserted", "vehicles_arrived",
                                                                  "co2_kg")}})
        write_meta(self.folder, self.meta)
        return {**self.meta, "stores": str(self.folder)}

    def fail(self, exc: BaseException) -> None:
        """Status ``failed`` with the error; what was published stays, marked so."""
        from citytwin.twin.entities import format_time_us

        self._close()
        if not self.meta:  # failed before the stores were made: nothing to mark
            return
        self.meta.update({"status": "failed", "error": str(exc) or type(exc).__name__,
                          "updated": format_time_us(self.clock())})
        write_meta(self.folder, self.meta)

    # -----------------------------------------------------------------------------------------------------
    def _close(self) -> None:
        if self.stores is not None:
            with contextlib.suppress(Exception):
                self.stores.close()
            self.stores = None

    def _mean(self, done: list[pd.DataFrame], current: pd.DataFrame, key: str, ends: set[float]) -> pd.DataFrame:
        """Intervals ``ends`` as the run writes them: the mean over seeds (in seed order) per ``begin, end, key``."""
        frames = [f[f["end"].isin(ends)] for f in [*done, current]]
        keys = [*_KEYS, key] if key == "edge" else [*_KEYS, key, "lane"]
        return pd.concat(frames).groupby(keys, as_index=False).mean(numeric_only=True)

    def _publish(self, iv: pd.DataFrame, det: pd.DataFrame | None, *, final: bool) -> None:
        """Publish the intervals of the running seed (``iv``, ``det``: what SUMO has written so far) whose mean
        over the seeds simulated so far covers more seeds than what was published: an edge interval once SUMO
        wrote it, a detector interval once every detector wrote it (SUMO buffers the detectors' file: they may
        come an interval or more later); ``final``: every interval of the finished seed."""
        from citytwin.foundation.timeseries import Ingestor
        from citytwin.twin.entities import EntityRef, MessageParser, format_time_us

        def todo(frames: list[pd.DataFrame], ends: set[float], done: dict[float, tuple[int, int]]) -> dict[float, int]:
            n = {e: sum(1 for f in frames if (f["end"] == e).any()) for e in ends}
            return {e: k for e, k in n.items() if k > done.get(e, (0, 0))[0]}

        edge_ends = todo([*self.done_iv, iv], {float(e) for e in iv["end"].unique()}, self.published)
        det_ends: dict[float, int] = {}
        if det is not None and self.places:
            n = det.groupby("end")["detector"].nunique()
            ready = {float(e) for e, k in n.items() if final or k == len(self.places)}  # type: ignore[arg-type]
            det_ends = todo([*self.done_det, det], ready, self.published_det)
        start_us = int(self.start_us or 0)
        name = self.name
        if not edge_ends and not det_ends:
            return
        means = self._mean(self.done_iv, iv, "edge", set(edge_ends)) if edge_ends else None
        if means is not None:
            means = means[~means["edge"].astype(str).str.startswith(":")]
        dmeans = self._mean(self.done_det, det, "detector", set(det_ends)) if det_ends else None  # type: ignore[arg-type]
        if self.parser is None:  # one parser for the run; its clock is the simulated time of the interval

            def lookup(eid: str) -> EntityRef | None:
                r = self.stores.state.lookup(eid)
                return EntityRef(*r) if r is not None else None

            self.parser = MessageParser(lookup, now_us=lambda: self.sim_now)
        parser = self.parser
        for end in sorted(set(edge_ends) | set(det_ends)):
            edge_docs: list[dict[str, Any]] = []
            det_docs: list[dict[str, Any]] = []
            if means is not None and end in edge_ends:
                edge_docs = _docs(means[means["end"] == end], "edge",
                                  lambda e: edge_entity_id(name, e) if e in self.locations else None, start_us)
            if dmeans is not None and end in det_ends:
                det_docs = _docs(dmeans[dmeans["end"] == end], "detector",
                                 lambda d: detector_entity_id(name, d) if d in self.places else None, start_us)
            self.sim_now = start_us + int(end * 1e6)
            accepted = []
            for docs in (edge_docs, det_docs):
                msgs = [(None, json.dumps(docs[i:i + 1000]).encode()) for i in range(0, len(docs), 1000)]
                rep = Ingestor(self.stores, parser).ingest(msgs, source="simulation") if msgs else None
                if rep is not None and rep.rejected:
                    dl = self.stores.deadletters.frame(limit=1)
                    detail = str(dl["detail"].iloc[0]) if len(dl) else ""
                    raise InputError(f"{rep.rejected} observations of interval ending at {end} s were refused by "
                                     f"the twin: {detail}", hint="is --start more than 30 years ago?")
                accepted.append(rep.accepted if rep is not None else 0)
            if end in edge_ends:  # a later publish of an interval replaces its observations
                self.published[end] = (edge_ends[end], accepted[0])
                self.seed_published.add(end)
            if end in det_ends:
                self.published_det[end] = (det_ends[end], accepted[1])
            obs = sum(a for _, a in self.published.values()) + sum(a for _, a in self.published_det.values())
            self.meta.update({"observations": obs, "intervals_published": len(self.published),
                              "detector_intervals_published": len(self.published_det),
                              "simulated_s": max(self.seed_published, default=None),
                              "updated": format_time_us(self.clock())})
            write_meta(self.folder, self.meta)
            if self.on_interval is not None:
                self.on_interval(dict(self.meta))


def run_live(scenario_dir: Path, out: Path, workspace: WorkspaceLike | None, name: str, *,
             start: str | None = None, now_us: Callable[[], int] | None = None,
             on_interval: Callable[[dict[str, Any]], None] | None = None, **run_kw: Any) -> dict[str, Any]:
    """:func:`citytwin.workflows.simulation.run` with its intervals published into the twin as scenario
    ``name`` while it runs (see the module docstring); returns the run's summary with ``published`` (the
    scenario's record). On failure the scenario is marked ``failed`` and the error raised again."""
    from citytwin.workflows.simulation import run

    pub = LivePublisher(workspace, name, start=start, now_us=now_us, on_interval=on_interval)
    try:
        summary = run(scenario_dir, out, monitor=pub, **run_kw)
    except BaseException as exc:
        pub.fail(exc)
        raise
    summary["published"] = pub.finish(summary, out)
    return summary
