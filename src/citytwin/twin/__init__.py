"""citytwin.twin: the live digital twin's domain logic (F1, F3, F4), pure functions, no I/O.

Modules: ``entities`` (NGSI-LD-style entities, MQTT messages, observations), ``aqi`` (HJ 633-2012
AQI), ``rules`` and ``live_rules`` (threshold rules), ``anomaly`` (sensor faults), ``alerts`` (alert
lifecycle), ``forecast`` (forecasts scored against baselines). The stores are in
:mod:`citytwin.foundation.timeseries`, the HTTP API in :mod:`citytwin.service`. See docs/twin.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from citytwin import lazy_exports

#: submodule -> the public names it defines (imported on first use: see :func:`citytwin.lazy_exports`)
_EXPORTS: dict[str, tuple[str, ...]] = {
    "entities": ("Entity", "EntityRef", "EntityType", "MessageParser", "Observation", "PropertySpec",
                 "entity_id"),
    "feeds": ("messages_from_long", "replay_schedule"),
    "aqi": ("AqiResult", "Category", "category", "daily_aqi", "hourly_aqi", "iaqi"),
    "rules": ("AlertCandidate", "ThresholdRule", "evaluate", "evaluate_all"),
    "live_rules": ("check_live_rules",),
    "anomaly": ("detect",),
    "alerts": ("Alert", "AlertBook", "AlertEvent", "AlertStateError"),
    "forecast": ("Forecaster", "backtest"),
}

__all__ = ["Alert", "AlertBook", "AlertCandidate", "AlertEvent", "AlertStateError", "AqiResult", "Category",
           "Entity", "EntityRef", "EntityType", "Forecaster", "MessageParser", "Observation",
           "PropertySpec", "ThresholdRule", "backtest", "category", "check_live_rules", "daily_aqi",
           "detect", "entity_id", "evaluate", "evaluate_all", "hourly_aqi", "iaqi", "messages_from_long",
           "replay_schedule"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from citytwin.twin.alerts import Alert, AlertBook, AlertEvent, AlertStateError
    from citytwin.twin.anomaly import detect
    from citytwin.twin.aqi import AqiResult, Category, category, daily_aqi, hourly_aqi, iaqi
    from citytwin.twin.entities import (
        Entity,
        EntityRef,
        EntityType,
        MessageParser,
        Observation,
        PropertySpec,
        entity_id,
    )
    from citytwin.twin.feeds import messages_from_long, replay_schedule
    from citytwin.twin.forecast import Forecaster, backtest
    from citytwin.twin.live_rules import check_live_rules
    from citytwin.twin.rules import AlertCandidate, ThresholdRule, evaluate, evaluate_all
