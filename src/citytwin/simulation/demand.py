"""Demand: trips from an OD matrix by zone, and the trips a new development adds.

Trip-generation rates (:data:`TRIP_RATES`) are peak-hour vehicle trips per 100 m² of gross floor area,
rounded from the averages of the ITE *Trip Generation Manual* (PM peak hour of adjacent street traffic;
per 1,000 ft² converted with 1,000 ft² = 92.9 m²). They are planning defaults, not local survey values:
pass your own rates where they exist. Half of a development's trips leave it and half arrive
(``share_out``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError

#: peak-hour vehicle trips per 100 m² floor area by land use (see the module docstring)
TRIP_RATES: dict[str, float] = {
    "residential": 0.5,   # multifamily mid-rise, ~0.44 trips/dwelling at ~85 m²
    "office": 1.2,        # general office building, 1.15 per 1,000 ft²
    "retail": 4.1,        # shopping centre, 3.81 per 1,000 ft²
    "school": 1.0,
    "industrial": 0.7,    # general light industrial, 0.65 per 1,000 ft²
}


@dataclass(frozen=True)
class Trip:
    """One trip: id, departure time (s), origin and destination edge."""

    id: str
    depart: float
    origin: str
    destination: str


def development_trips(floor_m2: float, land_use: str, *, hours: float = 1.0,
                      rates: Mapping[str, float] | None = None) -> int:
    """Vehicle trips a development generates over ``hours`` of peak traffic: ``floor_m2 / 100 * rate``.

    Examples
    --------
    >>> development_trips(10_000, "office")
    120
    """
    table = dict(TRIP_RATES if rates is None else rates)
    if land_use not in table:
        raise InputError(f"unknown land use {land_use!r}", field="land_use",
                         hint=f"one of {', '.join(sorted(table))}, or give a rate")
    if not floor_m2 > 0:
        raise InputError(f"floor area {floor_m2!r} m² must be positive", field="floor_m2")
    return round(floor_m2 / 100.0 * table[land_use] * hours)


def development_demand(edge: str, n_trips: int, other_edges: Sequence[str], *, begin: float, end: float,
                       origins: Sequence[str] | None = None, seed: int = 0, share_out: float = 0.5,
                       prefix: str = "dev") -> list[Trip]:
    """``n_trips`` trips to and from a development on ``edge``, spread evenly over ``[begin, end)``: the
    first ``share_out`` of them leave it for an edge drawn uniformly from ``other_edges``, the others arrive
    from an edge drawn from ``origins`` (default: ``other_edges``), seeded."""
    dests = [e for e in other_edges if e != edge]
    froms = [e for e in (other_edges if origins is None else origins) if e != edge]
    if not dests or not froms:
        raise InputError(f"no other edge of the network connects with development edge {edge!r}", field="edge")
    rng = np.random.default_rng(seed)
    n_out = round(n_trips * share_out)
    trips = []
    for k in range(n_trips):
        t = begin + (end - begin) * k / max(n_trips, 1)
        pool = dests if k < n_out else froms
        other = str(pool[int(rng.integers(len(pool)))])
        o, d = (edge, other) if k < n_out else (other, edge)
        trips.append(Trip(id=f"{prefix}_{k}", depart=round(t, 2), origin=o, destination=d))
    return trips


def od_trips(od: pd.DataFrame, zones: Mapping[str, Sequence[str]], *, begin: float = 0.0,
             end: float = 3600.0, seed: int = 0, file: str | None = None,
             arrivals: Mapping[str, Sequence[str]] | None = None) -> list[Trip]:
    """Trips from an OD matrix: ``origin, destination, trips`` rows (trips over ``[begin, end)``), each trip
    from an edge of its origin zone to an edge of its destination zone (drawn uniformly, seeded),
    departures spread evenly. ``arrivals``, when given, are the edges of each zone a trip may end on
    (default: ``zones``, which then serve both ends).

    Raises
    ------
    InputError
        Naming the row and field of a zone not in ``zones``, a missing column or a bad count.
    """
    for col in ("origin", "destination", "trips"):
        if col not in od.columns:
            raise InputError(f"the OD matrix has no column {col!r}", file=file, field=col,
                             hint="columns: origin, destination, trips")
    ends = zones if arrivals is None else arrivals
    rng = np.random.default_rng(seed)
    trips: list[Trip] = []
    for row, (o, d, n) in enumerate(zip(od["origin"], od["destination"], od["trips"], strict=True), start=1):
        for key, z, zmap in (("origin", o, zones), ("destination", d, ends)):
            if str(z) not in zmap:
                raise InputError(f"unknown zone {z!s}", file=file, row=row, field=key,
                                 hint=f"zones of the network: {', '.join(sorted(map(str, zmap))[:10])}")
            if not zmap[str(z)]:
                verb = "start" if key == "origin" else "end"
                raise InputError(f"zone {z!s} has no edge of the network a trip can {verb} on", file=file, row=row,
                                 field=key)
        try:
            count = float(n)
        except (TypeError, ValueError):
            raise InputError(f"trips {n!r} is not a number", file=file, row=row, field="trips") from None
        if not count >= 0 or count != int(count):
            raise InputError(f"trips {n!r} must be a whole number >= 0", file=file, row=row, field="trips")
        oe, de = list(zones[str(o)]), list(ends[str(d)])
        for k in range(int(count)):
            t = begin + (end - begin) * k / int(count)
            trips.append(Trip(id=f"od{row}_{k}", depart=round(t, 2), origin=str(oe[int(rng.integers(len(oe)))]),
                              destination=str(de[int(rng.integers(len(de)))])))
    trips.sort(key=lambda tr: tr.depart)
    return trips


def trips_xml(trips: Sequence[Trip]) -> str:
    """SUMO ``<trips>`` (routed by SUMO at departure on the network it runs), sorted by departure."""
    from xml.sax.saxutils import quoteattr

    rows = [f'    <trip id={quoteattr(t.id)} depart="{t.depart!r}" from={quoteattr(t.origin)} '
            f'to={quoteattr(t.destination)} departLane="best" departSpeed="max"/>'
            for t in sorted(trips, key=lambda tr: (tr.depart, tr.id))]
    return "<routes>\n" + "\n".join(rows) + "\n</routes>\n"
