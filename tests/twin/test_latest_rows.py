"""``ingest._latest_rows`` (what the live state keeps of a commit) against a plain loop: per (entity, property) the
row with the latest time, the last given of equal times, in the order of the keys' codes; with dense keys (a table
per key) and sparse ones (the sorting path), with and without the parser's codes."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from citytwin.foundation.timeseries import ingest as I


def _reference(cols: dict) -> list[tuple]:
    best: dict[tuple, int] = {}
    for i, (e, p, t) in enumerate(zip(cols["entity"], cols["property"], cols["time_us"], strict=True)):
        j = best.get((e, p))
        if j is None or t >= cols["time_us"][j]:
            best[(e, p)] = i
    return sorted((cols["entity"][i], cols["property"][i], cols["value"][i], cols["unit"][i],
                   int(cols["time_us"][i])) for i in best.values())


@pytest.mark.parametrize(("n", "entities", "props", "codes"),
                         [(5000, 12, 12, False), (5000, 12, 12, True), (3000, 2500, 2500, False),
                          (3000, 2500, 2500, True), (70, 3, 2, False)])
def test_latest_rows_are_the_last_of_the_latest_time_per_key(n, entities, props, codes):
    rng = random.Random(n + entities)
    ents = [f"e{rng.randrange(entities)}" for _ in range(n)]
    prop = [f"p{rng.randrange(props)}" for _ in range(n)]
    cols = {"entity": np.array(ents, dtype=object), "property": np.array(prop, dtype=object),
            "time_us": np.array([rng.randrange(6) for _ in range(n)], dtype=np.int64),
            "value": np.arange(n, dtype=np.float64), "unit": np.array(["u"] * n, dtype=object)}
    if codes:  # as the batch parser gives them: codes over strings in no particular order, some unused
        cols[I.CODES] = {}
        for name in ("entity", "property"):
            c, u = pd.factorize(cols[name])
            u = np.concatenate([np.array(["unused"], dtype=object), u[::-1]])
            cols[I.CODES][name] = (len(u) - 1 - c, u)
    got = I._latest_rows(cols)
    assert sorted(got) == _reference(cols)
    keys = [(e, p) for e, p, *_ in got]
    assert len(keys) == len(set(keys))
