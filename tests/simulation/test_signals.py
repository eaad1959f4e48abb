"""Pure signal-control logic: Webster against REFERENCES.md, transitions, max-pressure, plan checks."""

from __future__ import annotations

import pytest

from citytwin.foundation.errors import InputError
from citytwin.simulation.signals import (
    MaxPressureController,
    Phase,
    check_plan,
    pressures,
    transition,
    webster,
    webster_program,
)


def test_webster_reference_values() -> None:
    # REFERENCES.md: flows 500/300 pcu/h, saturation 1,600, lost time 16 s -> cycle 58 s, greens 26.25/15.75 s
    p = webster([500 / 1600, 300 / 1600], 16)
    assert p.cycle == pytest.approx(58.0)
    assert p.greens == pytest.approx((26.25, 15.75))
    # flow ratios 0.4/0.3, lost time 12 s -> 76.7 s
    assert webster([0.4, 0.3], 12).cycle == pytest.approx(76.67, abs=0.01)


def test_webster_oversaturated_uses_max_cycle() -> None:
    p = webster([0.6, 0.5], 10, max_cycle=150)
    assert p.saturated and p.cycle == 150


def test_webster_program_retimes_greens_from_link_flows() -> None:
    phases = [Phase(30, "GGrr"), Phase(3, "yyrr"), Phase(30, "rrGG"), Phase(3, "rryy")]
    out, plan = webster_program(phases, {0: 500, 1: 100, 2: 300, 3: 50}, saturation=1600, min_green=1)
    assert plan.lost_time == 6
    assert plan.flow_ratio_sum == pytest.approx(800 / 1600)
    assert [p.duration for p in out] == [pytest.approx(round(g, 1)) if i % 2 == 0 else 3
                                         for i, g in enumerate((plan.greens[0], 3, plan.greens[1], 3))]
    assert out[0].duration > out[2].duration  # the heavier phase gets the longer green


def test_transition_and_pressure() -> None:
    assert transition("GGgrr", "rrrGG") == "yyyrr"
    assert pressures(["Gr", "rG"], [("a", "x"), ("b", "y")], {"a": 5, "b": 2, "x": 1}) == [4.0, 2.0]


def test_max_pressure_switches_to_the_loaded_approach_through_yellow() -> None:
    c = MaxPressureController(["Gr", "rG"], [("a", "x"), ("b", "y")], min_green=5, yellow=2)
    assert c.step(1, {"b": 10}) is None  # before min green
    assert c.step(5, {"a": 1, "b": 10}) == "yr"
    assert c.step(6, {}) is None  # in yellow
    assert c.step(7, {}) == "rG"
    assert c.current == 1 and c.switches == 1
    assert c.step(12, {"a": 3, "b": 3}) is None  # tie keeps the current phase


def test_check_plan_names_intersection_and_phase() -> None:
    with pytest.raises(InputError, match=r"intersection 'B1', phase 1: state 'yyr' has 3 signals but the "
                                         r"intersection controls 4 links"):
        check_plan("B1", [Phase(30, "GGrr"), Phase(3, "yyr")], 4)
    with pytest.raises(InputError, match="no green phase"):
        check_plan("B1", [Phase(30, "rrrr")], 4)
