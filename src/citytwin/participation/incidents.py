"""Incidents (F7): a case that spans departments, opened from a twin alert or by an operator.

Pure helpers: which incident a twin alert asks for (:func:`incident_from_alert`), and which
complaints lie near it (:func:`nearby`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from citytwin.foundation.errors import InputError
from citytwin.participation.cases import haversine_m

#: Departments that take part in an incident, and their task, per alert kind (a city edits this).
PLAYBOOK: dict[str, list[tuple[str, str]]] = {
    "aqi": [("environment", "verify the pollution episode at the monitoring station"),
            ("health", "issue a health advisory for the affected area"),
            ("construction", "check dust control on construction sites nearby")],
    "congestion": [("traffic", "adjust signal plans and dispatch traffic police"),
                   ("transport", "inform bus operators of delays")],
    "noise": [("environment", "measure noise at the site"), ("construction", "check permitted working hours")],
    "construction": [("construction", "stop the work outside the permit and inspect the site"),
                     ("environment", "measure noise and dust at the site")],
}


@dataclass
class IncidentSpec:
    """What an alert opens: title, category, place, the tasks (department, title) and a reference."""

    title: str
    category: str
    description: str
    lat: float | None
    lon: float | None
    tasks: list[tuple[str, str]]
    alert_id: str
    entity: str
    data: dict[str, Any] = field(default_factory=dict)


def alert_kind(alert: Mapping[str, Any]) -> str:
    """``construction``, ``aqi``, ``congestion``, ``noise`` or ``other``, from the alert's rule and property."""
    s = f"{alert.get('rule', '')} {alert.get('property', '')}".lower()
    for k in ("construction", "aqi", "congestion", "noise"):
        if k in s:
            return k
    if any(p in s for p in ("pm25", "pm2.5", "pm10", "no2", "o3", "so2")):
        return "aqi"
    return "other"


def incident_from_alert(alert: Mapping[str, Any], *, location: tuple[float, float] | None = None,
                        playbook: Mapping[str, list[tuple[str, str]]] | None = None) -> IncidentSpec:
    """The incident a twin alert (an :meth:`~citytwin.twin.alerts.Alert.to_record` dict) opens.

    ``location`` (lat, lon) is where the alert's entity stands (else the alert's ``data`` ``lat``/``lon``).

    Raises
    ------
    InputError
        The alert lacks ``id``, ``rule`` or ``entity``.
    """
    for k in ("id", "rule", "entity"):
        if not alert.get(k):
            raise InputError(f"the alert has no {k!r}", field=k)
    kind = alert_kind(alert)
    book = dict(PLAYBOOK)
    book.update(playbook or {})
    data = dict(alert.get("data") or {})
    lat, lon = location if location else (data.get("lat"), data.get("lon"))
    peak = alert.get("peak")
    desc = (f"{alert.get('severity', 'warning')} alert {alert['rule']} on {alert['entity']}"
            + (f": {alert.get('property')} peak {peak}" if peak is not None else "")
            + (f" ({alert.get('message')})" if alert.get("message") else ""))
    category = {"aqi": "pollution", "construction": "construction_works"}.get(kind, kind)
    return IncidentSpec(title=f"{kind} incident at {alert['entity']}", category=category,
                        description=desc, lat=None if lat is None else float(lat), lon=None if lon is None else float(lon),
                        tasks=list(book.get(kind, [("operations", "assess the alert")])), alert_id=str(alert["id"]),
                        entity=str(alert["entity"]), data={"alert": dict(alert)})


def nearby(lat: float, lon: float, cases: Sequence[Mapping[str, Any]], *, radius_m: float = 1000.0,
           since: datetime | None = None) -> list[Any]:
    """Ids of the cases within ``radius_m`` of (lat, lon), created at or after ``since``."""
    out = []
    for c in cases:
        if c.get("lat") is None or c.get("lon") is None:
            continue
        if since is not None and c["created"] < since:
            continue
        if haversine_m(lat, lon, float(c["lat"]), float(c["lon"])) <= radius_m:
            out.append(c["id"])
    return out


def alerts_from_site_violations(violations: Any, locations: Mapping[str, tuple[float, float]] | None = None) -> list[dict[str, Any]]:
    """Alert records (for :func:`incident_from_alert`) from the rows of
    :func:`citytwin.participation.construction.site_violations`: rule ``construction_<kind>``, entity the
    site, a stable id from site, kind and start; ``locations`` maps site -> (lat, lon)."""
    out = []
    for r in violations.to_dict("records"):
        lat_lon = (locations or {}).get(str(r["site"]))
        out.append({"id": f"{r['site']}:{r['kind']}:{r['start'].isoformat()}", "rule": f"construction_{r['kind']}",
                    "entity": str(r["site"]), "severity": "warning", "peak": float(r["peak"]),
                    "property": "pm10" if r["kind"] == "dust" else "noise",
                    "message": f"{r['kind']} violation {r['start'].isoformat()} to {r['end'].isoformat()} "
                               f"({r['steps']} steps, limit {r['threshold']:g})",
                    "data": {"lat": lat_lon[0], "lon": lat_lon[1]} if lat_lon else {}})
    return out
