"""The numpy evaluation of the live rules (split from :mod:`citytwin.twin.live_rules`, which imports
:func:`aqi_arrays` and :func:`series_candidates` from here): the hourly AQI of one entity's kept readings and the
runs of a threshold rule over a series, with the time-zone offsets they need."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError
from citytwin.twin import aqi as aqi_mod
from citytwin.twin.rules import AlertCandidate, ThresholdRule

#: Properties a rule on ``aqi`` needs.
AQI_INPUTS: tuple[str, ...] = tuple(aqi_mod.POLLUTANTS)

_HOUR_US = 3_600_000_000


def _ts_us(us: int) -> pd.Timestamp:
    return pd.Timestamp(int(us) * 1000, tz="UTC")


_UTC = _ts_us(0).tz  # the time zone of the Timestamps _ts_us makes (candidates' times are alike)


@functools.lru_cache(maxsize=256)
def _step_ns(step: str) -> int:
    """``pd.Timedelta(step).value`` (ns), parsed once per step text (a parse costs ~10 µs, asked per rule and commit)."""
    return int(pd.Timedelta(step).value)


# ns since the epoch -> its Timestamp (UTC): a candidate's start, end, peak and detection times recur commit after
# commit (hour starts of the windows); a bounded cache (cleared when full) instead of an index of them per commit
_STAMPS: dict[int, pd.Timestamp] = {}


def _stamps(ns: list[int]) -> list[pd.Timestamp]:
    """``list(pd.DatetimeIndex(ns as datetime64[ns]).tz_localize(_UTC))``: the same Timestamps (value, unit ns, time
    zone), each made once (``tests/twin/test_live_batch.py`` compares)."""
    out = []
    get = _STAMPS.get
    for x in ns:
        t = get(x)
        if t is None:
            if len(_STAMPS) >= 4096:
                _STAMPS.clear()
            t = _STAMPS[x] = pd.Timestamp(x, tz=_UTC)
        out.append(t)
    return out


def _moving_mean(x: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """pandas ``rolling(window, min_periods).mean()`` over consecutive positions (NaN ignored)."""
    ok = ~np.isnan(x)
    cs = np.r_[0.0, np.cumsum(np.where(ok, x, 0.0))]
    cn = np.r_[0, np.cumsum(ok)]
    i = np.arange(1, len(x) + 1)
    j = np.maximum(i - window, 0)
    s, n = cs[i] - cs[j], cn[i] - cn[j]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= min_periods, s / np.maximum(n, 1), np.nan)


# (tz, UTC hour) -> UTC offset in µs: a cache, cleared at 4,096 hours (~0.4 MiB; a live feed brings a new hour every
# hour, a replay hundreds per second, so a larger bound only makes a larger saw-tooth in the ingest's memory)
_OFFSETS: dict[tuple[str, int], int] = {}


_DAY_OFFSETS: dict[tuple[str, int], int | None] = {}  # (tz, UTC day) -> its offset if the same all day, else None


def _day_offset(tz: str, lo_day: int, hi_day: int) -> int | None:
    """The offset (µs) of ``tz`` if it is the same at every hour of the UTC days ``lo_day..hi_day``, else None."""
    if hi_day - lo_day > 400:
        return None
    miss = [d for d in range(lo_day, hi_day + 1) if (tz, d) not in _DAY_OFFSETS]
    if miss:
        if len(_DAY_OFFSETS) + len(miss) > 4_096:
            _DAY_OFFSETS.clear()
            miss = list(range(lo_day, hi_day + 1))
        h = (np.repeat(np.asarray(miss, dtype=np.int64) * 24, 24) + np.tile(np.arange(24), len(miss))) * _HOUR_US
        at = pd.DatetimeIndex(h.astype("datetime64[us]"))
        off = (at.tz_localize("UTC").tz_convert(tz).tz_localize(None).as_unit("us").asi8 - h).reshape(-1, 24)
        same = (off == off[:, :1]).all(axis=1)
        for d, o, s in zip(miss, off[:, 0].tolist(), same.tolist(), strict=True):
            _DAY_OFFSETS[(tz, d)] = int(o) if s else None
    offs = {_DAY_OFFSETS.get((tz, d)) for d in range(lo_day, hi_day + 1)}
    return offs.pop() if len(offs) == 1 else None


def _fixed_offset(t_us: np.ndarray, tz: str) -> int | None:
    """The time zone's UTC offset (µs) if it is the same at every hour of ``t_us``, else None.

    Asked of each evaluated window, usually days that keep one offset throughout: those are answered from a
    cache per UTC day (:func:`_day_offset`); a range with a change of offset is checked hour by hour.
    """
    if not len(t_us):
        return None
    day_us = 24 * _HOUR_US
    whole = _day_offset(tz, int(t_us.min()) // day_us, int(t_us.max()) // day_us)
    if whole is not None:  # every hour of t_us lies in days of this one offset
        return whole
    hours = np.unique(t_us // _HOUR_US)
    found = {int(h): _OFFSETS.get((tz, int(h))) for h in hours}
    miss = [h for h, o in found.items() if o is None]
    if miss:
        if len(_OFFSETS) > 4_096:
            _OFFSETS.clear()
        at = pd.DatetimeIndex((np.asarray(miss, dtype=np.int64) * _HOUR_US).astype("datetime64[us]"))
        loc = at.tz_localize("UTC").tz_convert(tz).tz_localize(None)
        off = loc.as_unit("us").asi8 - at.as_unit("us").asi8
        for h, o in zip(miss, off, strict=True):
            _OFFSETS[(tz, h)] = found[h] = int(o)
    offs = set(found.values())
    return int(offs.pop()) if len(offs) == 1 else None  # type: ignore[arg-type]


def _local_hours(t_us: np.ndarray, tz: str) -> np.ndarray:
    """Local hour numbers (hours since 1970-01-01 00:00 local) of UTC times in µs."""
    off = _fixed_offset(t_us, tz)
    if off is not None:
        return np.asarray((t_us + off) // _HOUR_US, dtype=np.int64)
    idx = pd.DatetimeIndex(t_us.astype("datetime64[us]")).tz_localize("UTC").tz_convert(tz).tz_localize(None)
    return np.asarray(idx.as_unit("us").asi8 // _HOUR_US, dtype=np.int64)


def aqi_arrays(data: Mapping[str, tuple[np.ndarray, ...]], start_us: int, warmup_us: int,
               tz: str) -> tuple[np.ndarray, np.ndarray]:
    """Hourly AQI (HJ 633-2012) from the kept readings, as :func:`hourly_aqi_series` computes it.

    ``data``: pollutant -> (time µs UTC, value as sent, factor to the table's unit). Returns the hours
    (µs UTC, hour starts) from ``start_us`` to the last hour with a pollutant reading, and their AQI
    (NaN: no AQI). Readings before ``start_us - warmup_us`` are not used.
    """
    parts, last_seen = _aqi_parts(data, start_us - warmup_us)
    if not parts or last_seen is None:
        return np.zeros(0, np.int64), np.zeros(0)
    all_t = np.concatenate([t for _, t, _ in parts])
    lh_all = _local_hours(all_t, tz)
    g0, g1 = int(lh_all.min()), int(lh_all.max())
    n = g1 - g0 + 1
    mean = np.full((len(AQI_INPUTS), n), np.nan)
    pos = 0
    for j, t, c in parts:
        lh = lh_all[pos:pos + len(t)] - g0
        pos += len(t)
        ok = ~np.isnan(c)
        s = np.bincount(lh[ok], weights=c[ok], minlength=n)
        k = np.bincount(lh[ok], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[j] = np.where(k > 0, s / np.maximum(k, 1), np.nan)
    a = _aqi_of_means(mean, _moving_mean(mean[AQI_INPUTS.index("o3")], 8, 6),
                      _moving_mean(mean[AQI_INPUTS.index("so2")], 24, 20))
    return _utc_hours(g0, n, all_t, a, start_us, last_seen, tz)


def _moving_mean_rows(x: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """:func:`_moving_mean` of each row of ``x`` (rows laid from their own first position: the same cumulative sums)."""
    ok = ~np.isnan(x)
    zero = np.zeros((x.shape[0], 1))
    cs = np.concatenate([zero, np.cumsum(np.where(ok, x, 0.0), axis=1)], axis=1)
    cn = np.concatenate([zero.astype(np.int64), np.cumsum(ok, axis=1)], axis=1)
    i = np.arange(1, x.shape[1] + 1)
    j = np.maximum(i - window, 0)
    s, n = cs[:, i] - cs[:, j], cn[:, i] - cn[:, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= min_periods, s / np.maximum(n, 1), np.nan)


def aqi_arrays_many(items: Sequence[tuple[Mapping[str, tuple[np.ndarray, ...]], int]], warmup_us: int,
                    tz: str, kept_only: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`aqi_arrays` of several entities at once: ``items`` are (kept readings, start µs) per entity.

    The same hours and values as one :func:`aqi_arrays` per entity (``tests/twin/test_live_batch.py`` compares them):
    each entity is a row of one grid, its hourly means summed by one ``bincount`` over the rows (each bin holds the
    readings of one entity in the same order), the moving means by cumulative sums along each row from its first
    hour, the IAQIs and their maximum element by element. A batch of a few hours for a dozen stations paid the numpy
    calls of the AQI once per station; now once. The readings of all entities and pollutants are laid end to end
    (entity by entity, pollutant by pollutant, as :func:`aqi_arrays` lays one entity's) and cut at each entity's
    window, and the grid's hours go back to UTC for all rows at once where one UTC offset holds throughout
    (:func:`_rows_to_utc`): no numpy call per entity and pollutant. There (``kept_only``) the IAQIs are computed only
    for the hours returned (:func:`_rows_kept`), not for the warm-up's (a day of each row); ``kept_only=False``: for
    every hour of the grid, the rest dropped after (the earlier form, which the tests compare with).
    """
    empty = (np.zeros(0, np.int64), np.zeros(0))
    out: list[tuple[np.ndarray, np.ndarray]] = [empty] * len(items)
    ts: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    fs: list[np.ndarray] = []
    js: list[int] = []
    es: list[int] = []
    for e, (data, _) in enumerate(items):
        for j, p in enumerate(AQI_INPUTS):
            d = data.get(p)
            if d is not None and len(d[0]):
                ts.append(d[0])
                vs.append(d[1])
                fs.append(d[2])
                js.append(j)
                es.append(e)
    if not ts:
        return out
    lens = np.array([len(t) for t in ts], dtype=np.int64)
    ent = np.repeat(np.array(es, dtype=np.int64), lens)
    lo = np.array([s - warmup_us for _, s in items], dtype=np.int64)
    t_all = np.concatenate(ts)
    m = t_all >= lo[ent]  # (each entity's times are sorted: what searchsorted(t, lo) cuts)
    t_all, ent = t_all[m], ent[m]
    v_all = np.concatenate(vs)[m]
    f_all = np.concatenate(fs)[m]
    pol = np.repeat(np.array(js, dtype=np.int64), lens)[m]
    if not len(t_all):
        return out
    # each entity's last time with a value: rows only for entities with one
    small = np.iinfo(np.int64).min
    e_first = np.flatnonzero(np.r_[True, ent[1:] != ent[:-1]])
    seen_last = np.maximum.reduceat(np.where(np.isnan(v_all), small, t_all), e_first)
    has = seen_last > small
    if not has.any():
        return out
    if not has.all():
        inc = np.repeat(has, np.diff(np.r_[e_first, len(ent)]))
        t_all, ent, v_all, f_all, pol = t_all[inc], ent[inc], v_all[inc], f_all[inc], pol[inc]
        e_first = np.flatnonzero(np.r_[True, ent[1:] != ent[:-1]])
    row_ents = ent[e_first]
    last_seen = seen_last[has]
    n_rows = len(row_ents)
    row = np.repeat(np.arange(n_rows), np.diff(np.r_[e_first, len(ent)]))
    c_all = v_all * f_all
    c_all = np.where(c_all < 0, np.nan, c_all)
    lh = _local_hours(t_all, tz)
    g0 = np.minimum.reduceat(lh, e_first)
    ns = np.maximum.reduceat(lh, e_first) - g0 + 1
    n_max = int(ns.max())
    size = n_rows * n_max
    ok = ~np.isnan(c_all)
    where = (pol * size + lh - g0[row] + row * n_max)[ok]
    s = np.bincount(where, weights=c_all[ok], minlength=len(AQI_INPUTS) * size)
    k = np.bincount(where, minlength=len(AQI_INPUTS) * size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(k > 0, s / np.maximum(k, 1), np.nan)
    grid = mean.reshape(len(AQI_INPUTS), n_rows, n_max)
    o3_8h = _moving_mean_rows(grid[AQI_INPUTS.index("o3")], 8, 6)
    so2_24 = _moving_mean_rows(grid[AQI_INPUTS.index("so2")], 24, 20)
    starts = np.array([items[int(e)][1] for e in row_ents], dtype=np.int64)
    if kept_only:
        cells = _rows_kept(g0, ns, t_all, n_max, starts, last_seen, tz)
        if cells is not None:  # the AQI of the hours returned only (not of the warm-up's): element by element
            hours, keep, cut = cells
            a_kept = _aqi_of_means(grid[:, keep], o3_8h[keep], so2_24[keep], stacked=True)
            for e, res in zip(row_ents.tolist(), zip(_split(hours, cut), _split(a_kept, cut), strict=True),
                              strict=True):
                out[e] = res
            return out
    a = _aqi_of_means(grid, o3_8h, so2_24, stacked=True)
    done = _rows_to_utc(g0, ns, t_all, a, starts, last_seen, tz)
    if done is not None:
        for e, res in zip(row_ents.tolist(), done, strict=True):
            out[e] = res
        return out
    for r, e in enumerate(row_ents.tolist()):
        n = int(ns[r])
        out[e] = _utc_hours(int(g0[r]), n, t_all[row == r], a[r, :n], int(starts[r]), int(last_seen[r]), tz)
    return out


def _rows_kept(g0: np.ndarray, ns: np.ndarray, t_all: np.ndarray, n_max: int, starts: np.ndarray,
               last_seen: np.ndarray, tz: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Which cells of the grid :func:`_rows_to_utc` keeps, before the AQI is computed: (their UTC hours in row order,
    the mask over the grid's ``(rows, n_max)``, where each row's hours end in them as ``np.split`` takes it); None
    where it would return None."""
    day_us = 24 * _HOUR_US
    off = _day_offset(tz, int(t_all.min()) // day_us, int(t_all.max()) // day_us)
    if off is None:
        return None
    lo_h, hi_h = int(g0.min()) * _HOUR_US - off, int((g0 + ns - 1).max()) * _HOUR_US - off
    if _day_offset(tz, lo_h // day_us, hi_h // day_us) != off:
        return None
    cols = np.arange(n_max, dtype=np.int64)
    hours = (g0[:, None] + cols) * _HOUR_US - off
    keep = ((cols < ns[:, None]) & (hours >= starts[:, None])
            & (hours <= ((last_seen // _HOUR_US) * _HOUR_US)[:, None]))
    return hours[keep], keep, np.cumsum(keep.sum(axis=1))[:-1]


def _rows_to_utc(g0: np.ndarray, ns: np.ndarray, t_all: np.ndarray, a: np.ndarray, starts: np.ndarray,
                 last_seen: np.ndarray, tz: str) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """:func:`_utc_hours` of every row of the grid ``a`` at once, where the time zone keeps one offset over every day
    of the readings and of the grid's hours (then each row's own check finds that offset, with no gap or overlap);
    None otherwise (each row by :func:`_utc_hours`)."""
    kept = _rows_kept(g0, ns, t_all, a.shape[1], starts, last_seen, tz)
    if kept is None:
        return None
    hours, keep, cut = kept
    return list(zip(_split(hours, cut), _split(a[keep], cut), strict=True))


def _split(x: np.ndarray, cut: np.ndarray) -> list[np.ndarray]:
    """``np.split(x, cut)`` of a 1-D array at sorted positions: the same slices, without ``np.array_split``'s two
    ``swapaxes`` per part (~2 µs each: a dozen parts, twice, per commit)."""
    at = [0, *cut.tolist(), len(x)]
    return [x[i:j] for i, j in itertools.pairwise(at)]


def _aqi_parts(data: Mapping[str, tuple[np.ndarray, ...]],
               lo: int) -> tuple[list[tuple[int, np.ndarray, np.ndarray]], int | None]:
    """The pollutants' readings from ``lo`` as (index in AQI_INPUTS, times, concentration or NaN), and the last time
    with a reading."""
    parts = []
    last_seen = None
    for j, p in enumerate(AQI_INPUTS):
        if p not in data:
            continue
        t, v, f = data[p]
        i = int(np.searchsorted(t, lo, side="left"))
        t, v, f = t[i:], v[i:], f[i:]
        if not len(t):
            continue
        seen = ~np.isnan(v)
        if seen.any():
            ts = int(t[seen][-1])
            last_seen = ts if last_seen is None else max(last_seen, ts)
        c = v * f
        c = np.where(c < 0, np.nan, c)
        parts.append((j, t, c))
    return parts, last_seen


#: the IAQIs :func:`_aqi_of_means` takes: (pollutant, period), in the order of its rows
_IAQI_ROWS: tuple[tuple[str, str], ...] = (("pm25", "24h"), ("pm10", "24h"), ("so2", "1h"), ("so2", "24h"),
                                           ("no2", "1h"), ("co", "1h"), ("o3", "1h"), ("o3", "8h"))
_IAQI_TABLE: list[Any] = [None, None]  # [table, (breakpoints padded with inf, levels, last breakpoint, ...)]


def iaqi_rows(conc: np.ndarray, tbl: Any) -> np.ndarray:
    """``iaqi_array(*_IAQI_ROWS[r], conc[r], tbl)`` for every row r of ``conc`` (shape ``(8, ...)``) in one pass: the
    same arithmetic element by element (the breakpoint segment by counting the breakpoints at or below the value,
    what ``searchsorted(..., side="right")`` finds), so the same values bit for bit (``tests/twin/test_live_batch.py``
    compares); a negative concentration goes through ``iaqi_array`` row by row (which raises)."""
    if bool((conc < 0).any()):
        return np.stack([aqi_mod.iaqi_array(p, per, conc[r], tbl) for r, (p, per) in enumerate(_IAQI_ROWS)])
    if _IAQI_TABLE[0] is not tbl:
        bps = [np.asarray(tbl.breakpoints[k], dtype=np.float64) for k in _IAQI_ROWS]
        width = max(map(len, bps))
        bp = np.full((len(bps), width), np.inf)
        lv = np.zeros((len(bps), width), dtype=np.asarray(tbl.iaqi).dtype)
        for r, b in enumerate(bps):
            bp[r, :len(b)] = b
            lv[r, :len(b)] = np.asarray(tbl.iaqi[:len(b)])
        top = np.array([len(b) - 2 for b in bps], dtype=np.int64)
        last = np.array([b[-1] for b in bps])
        # rows whose period is the pollutant's switching one: NaN above the switch, else the last IAQI above the top
        sw = [tbl.switch.get(p) for p, _ in _IAQI_ROWS]
        cut = np.array([x[1] if x is not None and x[0] == per else np.nan for x, (_, per) in zip(sw, _IAQI_ROWS,
                                                                                                   strict=True)])
        _IAQI_TABLE[:] = [tbl, (bp, lv, top, last, cut)]
    bp, lv, top, last, cut = _IAQI_TABLE[1]
    shape = conc.shape
    c = conc.reshape(len(_IAQI_ROWS), -1)
    width = bp.shape[1]
    # (each row's own searchsorted method: np.searchsorted's dispatch cost ~3 µs more a row)
    seg = np.clip(np.stack([bp[r].searchsorted(c[r], side="right") for r in range(len(c))]) - 1, 0, top[:, None])
    at = seg + (np.arange(len(c)) * width)[:, None]  # positions in the flat tables
    bpf, lvf = bp.ravel(), lv.ravel()
    lo_b, hi_b, lo_i, hi_i = bpf[at], bpf[at + 1], lvf[at], lvf[at + 1]
    with np.errstate(invalid="ignore"):
        raw = (hi_i - lo_i) / (hi_b - lo_b) * (c - lo_b) + lo_i
        out = np.ceil(raw - aqi_mod._EPS) + 0.0
    switching = ~np.isnan(cut)
    out = np.where(switching[:, None], np.where(c > np.where(switching, cut, 0.0)[:, None], np.nan, out),
                   np.where(c > last[:, None], tbl.iaqi[-1], out))
    return np.where(np.isnan(c), np.nan, out).reshape(shape)


def _aqi_of_means(mean: np.ndarray, o3_8h: np.ndarray, so2_24: np.ndarray, stacked: bool = False) -> np.ndarray:
    """The AQI of hourly means (``mean[j]``: pollutant ``AQI_INPUTS[j]``, any shape), element by element.

    ``stacked``: the eight IAQIs in one pass (:func:`iaqi_rows`), else one ``iaqi_array`` each (the reference,
    what :func:`aqi_arrays` uses)."""
    tbl = aqi_mod.load_table()
    pm25, pm10, so2, no2, co, o3 = (mean[AQI_INPUTS.index(p)] for p in ("pm25", "pm10", "so2", "no2", "co", "o3"))
    if stacked:
        i = iaqi_rows(np.stack([pm25, pm10, so2, so2_24, no2, co, o3, o3_8h]), tbl)
        so2_1h, so2_d, rest = i[2], i[3], (i[0], i[1], i[4], i[5], i[6], i[7])
    else:
        so2_1h, so2_d = aqi_mod.iaqi_array("so2", "1h", so2, tbl), aqi_mod.iaqi_array("so2", "24h", so2_24, tbl)
        rest = (aqi_mod.iaqi_array("pm25", "24h", pm25, tbl), aqi_mod.iaqi_array("pm10", "24h", pm10, tbl),
                aqi_mod.iaqi_array("no2", "1h", no2, tbl), aqi_mod.iaqi_array("co", "1h", co, tbl),
                aqi_mod.iaqi_array("o3", "1h", o3, tbl), aqi_mod.iaqi_array("o3", "8h", o3_8h, tbl))
    so2_i = np.where(np.isnan(so2_1h) & (np.nan_to_num(so2, nan=-1.0) > tbl.switch["so2"][1]), so2_d, so2_1h)
    mat = np.stack([rest[0], rest[1], so2_i, *rest[2:]])
    has = ~np.isnan(mat).all(axis=0) & ~np.isnan(mean).all(axis=0)
    a = np.full(has.shape, np.nan)
    # (stacked: np.fmax.reduce, what np.nanmax computes for an ndarray, without its all-NaN check: no column here is)
    a[has] = np.fmax.reduce(mat[:, has], axis=0) if stacked else np.nanmax(mat[:, has], axis=0)
    return a


def _utc_hours(g0: int, n: int, all_t: np.ndarray, a: np.ndarray, start_us: int, last_seen: int,
               tz: str) -> tuple[np.ndarray, np.ndarray]:
    """Local hours ``g0 .. g0 + n - 1`` (AQI ``a``) as UTC hour starts from ``start_us`` to the last hour with a
    reading (hours that do not exist or are ambiguous in local time are dropped, as in hourly_aqi_series)."""
    local_us = (g0 + np.arange(n, dtype=np.int64)) * _HOUR_US
    off = _fixed_offset(all_t, tz)
    if off is not None and _fixed_offset(local_us - off, tz) == off:  # one offset throughout: no gap, no overlap
        valid = np.ones(n, dtype=bool)
        hours = local_us - off
    else:
        utc = pd.DatetimeIndex(local_us.astype("datetime64[us]")).tz_localize(
            tz, ambiguous="NaT", nonexistent="NaT").tz_convert("UTC")
        valid = ~np.asarray(utc.isna(), dtype=bool)
        hours = np.where(valid, utc.as_unit("us").asi8, 0)
    last_h = (last_seen // _HOUR_US) * _HOUR_US
    keep = valid & (hours >= start_us) & (hours <= last_h)
    return hours[keep].astype(np.int64), a[keep]


def holding_entities(rule: ThresholdRule, series: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[int]:
    """Positions in ``series`` (times, values) where the rule's condition holds at least once: the only series
    :func:`series_candidates` finds a run in (one comparison over all of them instead of one call per series)."""
    if not series:
        return []
    lens = np.array([len(v) for _, v in series], dtype=np.int64)
    if not lens.sum():
        return []
    v = np.concatenate([v for _, v in series])
    with np.errstate(invalid="ignore"):
        hold = _OPS_NP[rule.op](v, float(rule.threshold)) & ~np.isnan(v)
    seg = np.repeat(np.arange(len(series)), lens)
    return list(np.flatnonzero(np.bincount(seg[hold], minlength=len(series))).tolist())


def _holding(rule: ThresholdRule, t_us: np.ndarray,
             v: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray] | None:
    """What both forms of :func:`series_candidates` start from: the rule's step (µs), where a value is present,
    where the condition holds and its positions; None when it never holds (InputError for a relative rule)."""
    if rule.relative_to is not None:
        raise InputError(f"rule {rule.name!r}: relative thresholds are not evaluated live", field="relative_to")
    if not len(t_us):
        return None
    step_us = int(pd.Timedelta(rule.step).value // 1000)
    present = ~np.isnan(v)
    with np.errstate(invalid="ignore"):
        hold = _OPS_NP[rule.op](v, float(rule.threshold)) & present
    hi = np.flatnonzero(hold)
    return None if not len(hi) else (step_us, present, hold, hi)


def series_candidates(rule: ThresholdRule, entity: str, t_us: np.ndarray, v: np.ndarray,
                      now_us: int | None = None) -> list[AlertCandidate]:
    """:func:`citytwin.twin.rules.evaluate` of an absolute rule on one entity's series, in numpy.

    ``t_us`` sorted unique times (µs UTC), ``v`` values (NaN: missing). Candidates with UTC times.

    The runs, their lengths and whether they go on are found for all runs at once, and the times of the candidates
    made as one index (not a Timestamp, a Timedelta sum and two ``tz_localize`` per candidate): the candidates of
    :func:`series_candidates_loop`, the one-run-at-a-time form, which ``tests/twin/test_live_eval.py`` compares.
    """
    runs = _runs(rule, t_us, v, now_us)
    if runs is None:
        return series_candidates_loop(rule, entity, t_us, v, now_us)  # (runs of centuries, times at the bounds)
    return _candidates(rule, [entity], [runs])[0]


def series_candidates_many(rule: ThresholdRule, entities: Sequence[str],
                           series: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[list[AlertCandidate]]:
    """:func:`series_candidates` of several entities' series (``now_us`` None): the runs of all of them found in one
    pass over the series laid end to end (:func:`_runs_many`, a run never crossing from one series to the next), the
    candidates' times made as one index for all of them. The same candidates as :func:`series_candidates_each` (one
    :func:`_runs` per series; ``tests/twin/test_live_batch.py`` compares)."""
    flat = _runs_many(rule, series)
    if flat is None:  # (runs of centuries, times at the bounds: what each series' own check decides)
        return series_candidates_each(rule, entities, series)
    return _spread(rule, entities, len(series), *flat)


def _spread(rule: ThresholdRule, entities: Sequence[str], n: int, counts: np.ndarray,
            runs: _Runs) -> list[list[AlertCandidate]]:
    """The candidates of the laid-out ``runs`` (``counts`` per series), as a list per series of the ``n``."""
    out: list[list[AlertCandidate]] = [[] for _ in range(n)]
    has = np.flatnonzero(counts).tolist()
    if has:
        made = _candidates(rule, [entities[k] for k in has], [runs], [int(counts[k]) for k in has])
        for k, cands in zip(has, made, strict=True):
            out[k] = cands
    return out


def series_candidates_rules(rules: Sequence[ThresholdRule], entities: Sequence[str],
                            series: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[list[list[AlertCandidate]]]:
    """:func:`series_candidates_many` of each of ``rules`` (rules over the same property) on the same series: the series
    laid end to end once for all of them (:func:`_laid`), every series passed (one where a rule never holds gives no
    run: no :func:`holding_entities` first). Per rule, per series, the candidates; the same as
    ``[series_candidates_many(r, entities, series) for r in rules]`` (``tests/twin/test_live_batch.py`` compares)."""
    laid = _laid(series)
    out: list[list[list[AlertCandidate]]] = []
    for rule in rules:
        flat = _runs_laid(rule, laid)
        if flat is None:  # (runs of centuries, times at the bounds: what each series' own check decides)
            out.append(series_candidates_each(rule, entities, series))
            continue
        out.append(_spread(rule, entities, len(series), *flat))
    return out


def series_candidates_each(rule: ThresholdRule, entities: Sequence[str],
                           series: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[list[AlertCandidate]]:
    """:func:`series_candidates_many` with the runs found series by series (:func:`_runs` each): its earlier form,
    the reference its tests compare with, and its fallback where a series' times lie at the bounds."""
    out: list[list[AlertCandidate]] = [[] for _ in series]
    found: list[tuple[int, _Runs]] = []
    for k, (t_us, v) in enumerate(series):
        runs = _runs(rule, t_us, v, None)
        if runs is None:
            out[k] = series_candidates_loop(rule, entities[k], t_us, v)
        elif len(runs[0]):
            found.append((k, runs))
    if found:
        made = _candidates(rule, [entities[k] for k, _ in found], [r for _, r in found])
        for (k, _), cands in zip(found, made, strict=True):
            out[k] = cands
    return out


def _runs_many(rule: ThresholdRule, series: Sequence[tuple[np.ndarray, np.ndarray]]
               ) -> tuple[np.ndarray, _Runs] | None:
    """:func:`_runs` (``now_us`` None) of every series at once: (runs per series, the runs of all of them in series
    order), or None where one series' times need :func:`_runs`'s own bounds check (then each series alone).

    The series are laid end to end; a run starts where the gap to the previous holding step exceeds the allowed one
    *or* where a new series begins; each series' horizon (its last time) and last break (its last present value
    where the condition fails) are taken per series. The arithmetic per run is that of :func:`_runs`."""
    return _runs_laid(rule, _laid(series))


# the series of :func:`_runs_laid` laid end to end: (length of each, times, values, series of each position, where a
# value is present, each series' last position); None when they hold no value at all
_Laid = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _laid(series: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[int, _Laid | None]:
    """The series laid end to end once for :func:`_runs_laid` (what does not depend on the rule)."""
    lens = np.array([len(t) for t, _ in series], dtype=np.int64)
    n_ser = len(series)
    if not n_ser or not lens.sum():
        return n_ser, None
    t_us = np.concatenate([np.asarray(t, dtype=np.int64) for t, _ in series])
    v = np.concatenate([np.asarray(x, dtype=float) for _, x in series])
    seg = np.repeat(np.arange(n_ser), lens)
    return n_ser, (lens, t_us, v, seg, ~np.isnan(v), np.cumsum(lens) - 1)


def _runs_laid(rule: ThresholdRule, laid: tuple[int, _Laid | None]) -> tuple[np.ndarray, _Runs] | None:
    """:func:`_runs_many` of series laid end to end by :func:`_laid` (shared by the rules over the same series)."""
    n_ser, lay = laid
    none: _Runs = (np.zeros(0, np.int64), np.zeros(0, bool), [], *(np.zeros(0, np.int64),) * 4)
    if lay is None:
        return np.zeros(n_ser, np.int64), none
    if rule.relative_to is not None:
        raise InputError(f"rule {rule.name!r}: relative thresholds are not evaluated live", field="relative_to")
    lens, t_us, v, seg, present, last = lay
    step_ns = _step_ns(rule.step)
    step_us = step_ns // 1000
    with np.errstate(invalid="ignore"):
        hold = _OPS_NP[rule.op](v, float(rule.threshold)) & present
    hi = np.flatnonzero(hold)
    if not len(hi):
        return np.zeros(n_ser, np.int64), none
    th, sh = t_us[hi], seg[hi]
    det_ns = step_ns * (rule.min_steps - 1)
    lo, top = int(th.min()), int(th.max())
    big, small = int(np.iinfo(np.int64).max), int(np.iinfo(np.int64).min) + 1
    if (top - lo >= 2**53 or max(top * 1000, top * 1000 + det_ns) > big
            or min(lo * 1000, lo * 1000 + det_ns) < small):
        return None  # (each series' own check: within these bounds every series passes it)
    limit = (rule.max_gap + 1) * step_us
    starts = np.flatnonzero(np.r_[True, (np.diff(th) > limit) | (sh[1:] != sh[:-1])])
    ends = np.r_[starts[1:], len(th)]
    t0s, t1s = th[starts], th[ends - 1]
    steps = np.round((t1s - t0s) / step_us).astype(np.int64) + 1
    kept = np.flatnonzero(steps >= rule.min_steps)
    if not len(kept):
        return np.zeros(n_ser, np.int64), none
    run_seg = sh[starts][kept]
    # (last: each series' last position, its horizon; unused for an empty series)
    horizon = t_us[np.maximum(last, 0)][run_seg]
    going = t1s[kept] >= horizon - step_us * rule.max_gap
    brk = np.flatnonzero(present & ~hold)
    if len(brk):  # each series' last break: the last break position at or before its last position, if in it
        j = np.searchsorted(brk, last, side="right") - 1
        has_brk = (j >= 0) & (last - lens + 1 <= brk[np.maximum(j, 0)])
        last_brk = t_us[brk[np.maximum(j, 0)]]
        going &= ~(has_brk[run_seg] & (t1s[kept] < last_brk[run_seg]))
    vals = v[hi]
    best = (np.maximum if rule.op in (">", ">=") else np.minimum).reduceat(vals, starts)
    hit = np.flatnonzero(vals == np.repeat(best, ends - starts))
    first = hit[np.searchsorted(hit, starts)][kept]
    k0, k1 = t0s[kept] * 1000, t1s[kept] * 1000
    counts = np.bincount(run_seg, minlength=n_ser).astype(np.int64)
    return counts, (steps[kept], going, vals[first].tolist(), k0, k1, th[first].astype(np.int64) * 1000,
                    k0 + det_ns)


# a series' runs that hold for min_steps: steps, ongoing, peak values, and start, end, peak time and detection in ns
_Runs = tuple[np.ndarray, np.ndarray, list[float], np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _runs(rule: ThresholdRule, t_us: np.ndarray, v: np.ndarray, now_us: int | None) -> _Runs | None:
    """The runs of :func:`series_candidates` as arrays; None where only the loop's arithmetic is exact."""
    none: _Runs = (np.zeros(0, np.int64), np.zeros(0, bool), [], *(np.zeros(0, np.int64),) * 4)
    held = _holding(rule, t_us, v)
    if held is None:
        return none
    step_us, present, hold, hi = held
    th = t_us[hi]
    limit = (rule.max_gap + 1) * step_us
    starts = np.flatnonzero(np.r_[True, np.diff(th) > limit])
    ends = np.r_[starts[1:], len(th)]
    t0s, t1s = th[starts].astype(np.int64), th[ends - 1].astype(np.int64)
    step_ns = int(pd.Timedelta(rule.step).value)
    det_ns = step_ns * (rule.min_steps - 1)
    lo, top = int(t0s[0]), int(t1s[-1])  # µs (th is sorted)
    big, small = int(np.iinfo(np.int64).max), int(np.iinfo(np.int64).min) + 1  # (the smallest is NaT)
    if (top - lo >= 2**53 or max(top * 1000, top * 1000 + det_ns) > big
            or min(lo * 1000, lo * 1000 + det_ns) < small):
        return None
    # a run's steps as the loop computes them, (t1 - t0) / step rounded half to even: for spans under 2**53 µs
    # the float64 division here is the same correctly rounded quotient as Python's int / int
    steps = np.round((t1s - t0s) / step_us).astype(np.int64) + 1
    kept = np.flatnonzero(steps >= rule.min_steps)
    if not len(kept):
        return none
    brk_idx = np.flatnonzero(present & ~hold)
    horizon = int(t_us[-1]) if now_us is None else now_us
    going = t1s[kept] >= horizon - step_us * rule.max_gap
    if len(brk_idx):
        going &= ~(t1s[kept] < int(t_us[brk_idx[-1]]))
    # each run's peak: its first value equal to its maximum (minimum), as argmax (argmin) finds it (no NaN holds)
    vals = v[hi]
    best = (np.maximum if rule.op in (">", ">=") else np.minimum).reduceat(vals, starts)
    hit = np.flatnonzero(vals == np.repeat(best, ends - starts))
    first = hit[np.searchsorted(hit, starts)][kept]
    k0, k1 = t0s[kept] * 1000, t1s[kept] * 1000
    return steps[kept], going, vals[first].tolist(), k0, k1, th[first].astype(np.int64) * 1000, k0 + det_ns


def _candidates(rule: ThresholdRule, entities: Sequence[str], runs: Sequence[_Runs],
                counts: Sequence[int] | None = None) -> list[list[AlertCandidate]]:
    """The candidates of each entity's runs, their Timestamps made as one index. ``counts`` given: ``runs`` is one
    set of runs, the first ``counts[0]`` of ``entities[0]``, the next ``counts[1]`` of ``entities[1]``, ..."""
    m = sum(len(r[0]) for r in runs)
    if not m:
        return [[] for _ in (runs if counts is None else entities)]
    at = _stamps(np.concatenate([np.concatenate([r[i] for r in runs]) for i in (3, 4, 5, 6)]).tolist())
    text = rule.message
    naive = "start" in text or "end" in text  # (the message's start and end are local-free, naive UTC)
    thr = float(rule.threshold)
    if counts is None:
        per = [(e, r[0].tolist(), r[1].tolist(), r[2]) for e, r in zip(entities, runs, strict=True)]
    else:
        steps_all, going_all, peaks_all = runs[0][0].tolist(), runs[0][1].tolist(), runs[0][2]
        bounds = np.r_[0, np.cumsum(counts)].tolist()
        per = [(e, steps_all[a:b], going_all[a:b], peaks_all[a:b])
               for e, a, b in zip(entities, bounds[:-1], bounds[1:], strict=True)]
    out: list[list[AlertCandidate]] = []
    n = 0
    for entity, steps, going, peaks in per:
        mine: list[AlertCandidate] = []
        for st, ongoing, peak in zip(steps, going, peaks, strict=True):
            start, end = at[n], at[m + n]
            msg = (text.format(entity=entity, property=rule.property, op=rule.op, threshold=thr, peak=peak, steps=st,
                               start=start.tz_localize(None), end=end.tz_localize(None)) if naive else
                   text.format(entity=entity, property=rule.property, op=rule.op, threshold=thr, peak=peak, steps=st))
            mine.append(AlertCandidate(rule.name, entity, rule.property, start, end, peak, at[2 * m + n], st, thr,
                                       rule.severity, bool(ongoing), msg, op=rule.op, detected_at=at[3 * m + n]))
            n += 1
        out.append(mine)
    return out


def series_candidates_loop(rule: ThresholdRule, entity: str, t_us: np.ndarray, v: np.ndarray,
                           now_us: int | None = None) -> list[AlertCandidate]:
    """:func:`series_candidates` one run at a time (its earlier form: the reference its tests compare with, and
    what it falls back to for runs spanning centuries or times at the bounds of a Timestamp)."""
    held = _holding(rule, t_us, v)
    if held is None:
        return []
    step_us, present, hold, hi = held
    brk_idx = np.flatnonzero(present & ~hold)
    last_break = int(t_us[brk_idx[-1]]) if len(brk_idx) else None
    horizon = int(t_us[-1]) if now_us is None else now_us
    th = t_us[hi]
    limit = (rule.max_gap + 1) * step_us
    first = np.r_[True, np.diff(th) > limit]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(th)]
    maximise = rule.op in (">", ">=")
    step = pd.Timedelta(rule.step)
    out: list[AlertCandidate] = []
    for s, e in zip(starts, ends, strict=True):
        t0, t1 = int(th[s]), int(th[e - 1])
        steps = int(np.round((t1 - t0) / step_us)) + 1
        if steps < rule.min_steps:
            continue
        vals = v[hi[s:e]]
        k = int(np.argmax(vals) if maximise else np.argmin(vals))
        peak = float(vals[k])
        ongoing = not (last_break is not None and last_break > t1) and t1 >= horizon - step_us * rule.max_gap
        start, end = _ts_us(t0), _ts_us(t1)
        thr = float(rule.threshold)
        msg = rule.message.format(entity=entity, property=rule.property, op=rule.op, threshold=thr,
                                  peak=peak, steps=steps, start=start.tz_localize(None), end=end.tz_localize(None))
        out.append(AlertCandidate(rule.name, entity, rule.property, start, end, peak, _ts_us(int(th[s + k])),
                                  steps, thr, rule.severity, bool(ongoing), msg, op=rule.op,
                                  detected_at=start + step * (rule.min_steps - 1)))
    return out


_OPS_NP: dict[str, Callable[[Any, Any], Any]] = {">": np.greater, ">=": np.greater_equal, "<": np.less,
                                                 "<=": np.less_equal}
