"""Signal control (F6): Webster's fixed-time plan from flows, max-pressure (Varaiya 2013) decisions,
and checks of a signal plan against an intersection.

A signal program is a list of :class:`Phase` (duration in s, SUMO state string with one character per
controlled link: ``G``/``g`` green, ``y`` yellow, ``r`` red). A *green phase* has at least one green link
and no yellow; the other phases are transitions whose durations make up the lost time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from citytwin.foundation.errors import InputError


@dataclass(frozen=True)
class Phase:
    """One phase of a signal program."""

    duration: float
    state: str

    @property
    def is_green(self) -> bool:
        """Whether this phase serves traffic (some ``G``/``g`` and no ``y``)."""
        return any(c in "Gg" for c in self.state) and "y" not in self.state.lower()


@dataclass(frozen=True)
class WebsterPlan:
    """Webster's optimal fixed-time plan: cycle ``C0 = (1.5 L + 5) / (1 - Y)`` and effective greens
    ``g_i = (C0 - L) y_i / Y`` (REFERENCES.md, Webster 1958)."""

    cycle: float
    greens: tuple[float, ...]
    lost_time: float
    flow_ratio_sum: float
    saturated: bool


def webster(flow_ratios: Sequence[float], lost_time: float, *, min_cycle: float = 0.0,
            max_cycle: float = 180.0) -> WebsterPlan:
    """Webster's cycle and greens from the critical flow ratios ``y_i = q_i / s_i`` of the phases.

    Parameters
    ----------
    flow_ratios
        Critical flow ratio of each green phase.
    lost_time
        Total lost time per cycle ``L`` in s.
    min_cycle, max_cycle
        Bounds of the cycle; when ``Y = sum(y_i) >= 1`` (oversaturated) the cycle is ``max_cycle`` and
        ``saturated`` is set.

    Examples
    --------
    >>> p = webster([500 / 1600, 300 / 1600], 16)
    >>> round(p.cycle, 2), [round(g, 2) for g in p.greens]
    (58.0, [26.25, 15.75])
    >>> round(webster([0.4, 0.3], 12).cycle, 1)
    76.7
    """
    ys = [float(y) for y in flow_ratios]
    if not ys or any(y < 0 for y in ys):
        raise ValueError("flow ratios must be non-negative and at least one")
    total = sum(ys)
    saturated = total >= 1.0
    cycle = max_cycle if saturated else (1.5 * lost_time + 5.0) / (1.0 - total)
    cycle = min(max(cycle, min_cycle, lost_time + len(ys)), max_cycle)
    effective = cycle - lost_time
    greens = tuple(effective * y / total if total > 0 else effective / len(ys) for y in ys)
    return WebsterPlan(cycle=cycle, greens=greens, lost_time=float(lost_time), flow_ratio_sum=total,
                       saturated=saturated)


def webster_program(phases: Sequence[Phase], link_flows: Mapping[int, float], *, saturation: float = 1800.0,
                    min_green: float = 5.0, max_cycle: float = 180.0) -> tuple[list[Phase], WebsterPlan]:
    """A program's green phases retimed by Webster from the flows on its links.

    Parameters
    ----------
    phases
        The program as given (transitions keep their durations; their sum is the lost time).
    link_flows
        Flow in veh/h on each controlled link (SUMO link index) over the period.
    saturation
        Saturation flow per link in veh/h (one lane).
    min_green
        Shortest green kept for a phase.

    Returns
    -------
    (phases, plan)
        The retimed program and the Webster plan behind it.
    """
    greens = [i for i, p in enumerate(phases) if p.is_green]
    if not greens:
        raise ValueError("the program has no green phase")
    lost = sum(p.duration for i, p in enumerate(phases) if i not in greens)
    ratios = [max((link_flows.get(k, 0.0) / saturation for k, c in enumerate(phases[i].state) if c in "Gg"),
                  default=0.0) for i in greens]
    plan = webster(ratios, lost, max_cycle=max_cycle)
    out = list(phases)
    for i, g in zip(greens, plan.greens, strict=True):
        out[i] = Phase(duration=round(max(g, min_green), 1), state=phases[i].state)
    return out, plan


def check_plan(tls_id: str, phases: Sequence[Phase], n_links: int, *, file: str | None = None) -> None:
    """Check that a plan fits an intersection: every phase has one state character per controlled link,
    only valid characters, a positive duration, and at least one phase is green.

    Raises
    ------
    InputError
        Naming the intersection and the phase.
    """
    if not phases:
        raise InputError(f"signal plan of intersection {tls_id!r} has no phases", file=file, field=tls_id)
    for i, p in enumerate(phases):
        if len(p.state) != n_links:
            raise InputError(f"signal plan of intersection {tls_id!r}, phase {i}: state {p.state!r} has "
                             f"{len(p.state)} signals but the intersection controls {n_links} links",
                             file=file, field=tls_id)
        bad = set(p.state) - set("GgyYrRuOos")
        if bad:
            raise InputError(f"signal plan of intersection {tls_id!r}, phase {i}: unknown signal(s) "
                             f"{''.join(sorted(bad))!r}", file=file, field=tls_id)
        if not p.duration > 0:
            raise InputError(f"signal plan of intersection {tls_id!r}, phase {i}: duration {p.duration!r} "
                             "must be positive", file=file, field=tls_id)
    if not any(p.is_green for p in phases):
        raise InputError(f"signal plan of intersection {tls_id!r} has no green phase", file=file, field=tls_id)


def transition(state_from: str, state_to: str) -> str:
    """The yellow state between two greens: links green now and red next turn yellow, others keep ``r``
    unless green in both.

    Examples
    --------
    >>> transition("GGrr", "rrGG")
    'yyrr'
    >>> transition("GGrr", "GrGr")
    'Gyrr'
    """
    out = []
    for a, b in zip(state_from, state_to, strict=True):
        if a in "Gg" and b in "Gg":
            out.append(a)
        elif a in "Gg":
            out.append("y")
        else:
            out.append("r")
    return "".join(out)


def pressures(green_states: Sequence[str], links: Sequence[tuple[str, str]], counts: Mapping[str, float]
              ) -> list[float]:
    """Max-pressure of each green phase: the sum over its green links of (vehicles on the incoming lane
    - vehicles on the outgoing lane) (Varaiya 2013, with unit saturation rates).

    Parameters
    ----------
    green_states
        State strings of the candidate phases.
    links
        ``(incoming lane, outgoing lane)`` of each link index.
    counts
        Vehicles per lane.

    Examples
    --------
    >>> pressures(["Gr", "rG"], [("a", "x"), ("b", "y")], {"a": 5, "b": 2, "x": 1})
    [4.0, 2.0]
    """
    out = []
    for state in green_states:
        p = 0.0
        for k, c in enumerate(state):
            if c in "Gg" and k < len(links):
                inc, outl = links[k]
                p += float(counts.get(inc, 0.0)) - float(counts.get(outl, 0.0))
        out.append(p)
    return out


class MaxPressureController:
    """Max-pressure control of one intersection, as a step function (no SUMO inside: the caller feeds
    lane counts and sets the returned state).

    Every ``min_green`` seconds of green the phase with the highest pressure is chosen (ties keep the
    current phase); a change goes through ``yellow`` seconds of :func:`transition`.

    Parameters
    ----------
    greens
        The intersection's green states (from its program).
    links
        ``(incoming lane, outgoing lane)`` per link index.
    min_green, yellow
        Shortest green and yellow time in s.
    """

    def __init__(self, greens: Sequence[str], links: Sequence[tuple[str, str]], *, min_green: float = 10.0,
                 yellow: float = 3.0) -> None:
        if not greens:
            raise ValueError("max-pressure needs at least one green phase")
        self.greens = list(greens)
        self.links = list(links)
        self.min_green = min_green
        self.yellow = yellow
        self.current = 0
        self.target: int | None = None
        self.since = 0.0
        self.switches = 0
        # (incoming, outgoing) lanes of each green state's green links, for :func:`pressures` without re-reading
        # the state strings at every decision
        self._served = [[self.links[k] for k, c in enumerate(st) if c in "Gg" and k < len(self.links)]
                        for st in self.greens]

    def next_event(self) -> float:
        """The earliest time at which :meth:`step` may change the state (end of the yellow, or of the minimum
        green); before it, :meth:`step` returns ``None``."""
        return self.since + (self.yellow if self.target is not None else self.min_green)

    def due(self, t: float) -> bool:
        """Whether :meth:`step` at time ``t`` compares pressures (and so needs lane counts)."""
        return self.target is None and t - self.since >= self.min_green

    def step(self, t: float, counts: Mapping[str, float]) -> str | None:
        """Advance to time ``t`` (s) with the current lane counts; the state to set, or ``None`` when it
        does not change."""
        if self.target is not None:  # in yellow
            if t - self.since >= self.yellow:
                self.current, self.target, self.since = self.target, None, t
                return self.greens[self.current]
            return None
        if t - self.since < self.min_green:
            return None
        p = [sum(float(counts.get(a, 0.0)) - float(counts.get(b, 0.0)) for a, b in served) for served in self._served]
        best = max(range(len(p)), key=lambda i: (p[i], i == self.current))
        if best == self.current:
            return None
        self.target, self.since = best, t
        self.switches += 1
        return transition(self.greens[self.current], self.greens[best])
