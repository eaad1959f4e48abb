"""Short-term forecasts (1–6 h ahead) and their verification: predict, then check against what happened.

Models
------
``persistence``
    The last observed value (carried forward over at most one season of missing steps).
``seasonal_naive``
    The value one season (default one day) before the target time: ``ŷ(t+h) = y(t+h−s)``. This is
    the **baseline**: skill is measured against it.
``ridge``
    Ridge regression (scikit-learn) on lags, the recent mean, the seasonal values around the target
    time, the entity's level and the target's time of day and weekday, one model per horizon
    ("direct" strategy), pooled over entities.
``gbrt``
    Histogram gradient boosting (scikit-learn) on the same features, with absolute-error loss.

Every forecast is a record: ``entity``, ``property``, ``issued_at`` (the time of the last
observation used), ``target_time``, ``horizon`` (a Timedelta), ``steps``, ``model``, ``value``.
:func:`score` joins forecasts with the actual values and reports MAE per model and horizon, and the
skill ``1 − MAE / MAE_baseline`` on the forecasts that every compared model issued (so that no
model is scored on easier cases). A skill below 0 means the model lost to the baseline: it is
reported as is.

Series are put on a regular grid of ``freq`` first (means of the readings in each interval); missing
intervals stay missing: no forecast is issued from a missing seasonal value, and missing actuals are
not scored.

Examples
--------
>>> import numpy as np, pandas as pd
>>> t = pd.date_range("2024-01-01", periods=24 * 20, freq="h")
>>> y = 50 + 20 * np.sin(2 * np.pi * t.hour / 24) + np.random.default_rng(0).normal(0, 2, len(t))
>>> obs = pd.DataFrame({"entity": "s1", "property": "pm25", "time": t, "value": y})
>>> fc = backtest(obs, property="pm25", train_until=t[24 * 14], models=("seasonal_naive", "ridge"))
>>> sorted(fc["model"].unique()), sorted(fc["steps"].unique().tolist())
(['ridge', 'seasonal_naive'], [1, 2, 3, 4, 5, 6])
>>> s = score(fc, obs)
>>> bool((s.loc[s["model"] == "ridge", "skill"] > 0).all())
True
"""

from __future__ import annotations

import builtins
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from citytwin.foundation.errors import InputError

BASELINE = "seasonal_naive"
MODELS: tuple[str, ...] = ("persistence", "seasonal_naive", "ridge", "gbrt")
LEARNED: tuple[str, ...] = ("ridge", "gbrt")
RECORD_COLUMNS = ["entity", "property", "issued_at", "target_time", "horizon", "steps", "model", "value"]
DEFAULT_HORIZONS: tuple[str, ...] = ("1h", "2h", "3h", "4h", "5h", "6h")


# ---------------------------------------------------------------------------------------------
# grid and features
# ---------------------------------------------------------------------------------------------

def to_grid(obs: pd.DataFrame, *, property: str | None = None, freq: str = "1h") -> pd.DataFrame:
    """Observations on a regular time grid: index ``time`` (every ``freq``), one column per entity.

    Readings within an interval are averaged (the interval is labelled by its start); intervals
    without a reading are NaN.

    Examples
    --------
    >>> obs = pd.DataFrame({"entity": "a", "property": "pm25", "value": [1.0, 3.0, 5.0],
    ...                     "time": pd.to_datetime(["2024-01-01 00:10", "2024-01-01 00:40", "2024-01-01 02:00"])})
    >>> to_grid(obs, property="pm25")["a"].tolist()
    [2.0, nan, 5.0]
    """
    for col in ("entity", "time", "value"):
        if col not in obs.columns:
            raise InputError(f"observation frame lacks column {col!r}", field=col)
    sub = obs
    if "property" in obs.columns:
        props = obs["property"].unique()
        if property is None:
            if len(props) != 1:
                raise InputError(f"several properties ({', '.join(map(str, props[:5]))}): say which",
                                 field="property")
            property = str(props[0])
        sub = obs[obs["property"] == property]
        if sub.empty:
            raise InputError(f"no {property!r} observations", field="property")
    try:
        step = pd.Timedelta(freq)
    except ValueError as exc:
        raise InputError(f"bad frequency {freq!r}", field="freq") from exc
    time = pd.to_datetime(sub["time"]).dt.floor(step)
    value = pd.to_numeric(sub["value"], errors="coerce").astype(float)
    wide = pd.DataFrame({"entity": sub["entity"].astype(str).to_numpy(), "time": time.to_numpy(),
                         "value": value.to_numpy()}).pivot_table(
        index="time", columns="entity", values="value", aggfunc="mean", dropna=False)
    full = pd.date_range(wide.index.min(), wide.index.max(), freq=step)
    wide = wide.reindex(full)
    wide.index.name = "time"
    wide.columns.name = None
    return wide


def _shift(a: np.ndarray, k: int) -> np.ndarray:
    """Row-shift a (T, E) array: out[t] = a[t − k] (NaN where undefined); k < 0 looks ahead."""
    out = np.full_like(a, np.nan)
    if k == 0:
        out[:] = a
    elif k > 0:
        if k < len(a):
            out[k:] = a[:-k]
    elif -k < len(a):
        out[:k] = a[-k:]
    return out


def _ffill(a: np.ndarray, limit: int) -> np.ndarray:
    return pd.DataFrame(a).ffill(limit=limit).to_numpy()


def _steps(h: str | int | pd.Timedelta, step: pd.Timedelta, what: str) -> int:
    if isinstance(h, (int, np.integer)):
        n = int(h)
    else:
        try:
            td = pd.Timedelta(h)
        except ValueError as exc:
            raise InputError(f"bad {what} {h!r}", field=what) from exc
        n_f = td / step
        if n_f != int(n_f):
            raise InputError(f"{what} {h} is not a multiple of the grid step {step}", field=what)
        n = int(n_f)
    if n < 1:
        raise InputError(f"{what} must be at least one step", field=what)
    return n


@dataclass
class _Design:
    """Feature arrays of one horizon over the grid: X (T·E, F), target (T·E,)."""

    X: np.ndarray
    y: np.ndarray
    names: list[str]


def _features(Y: np.ndarray, times: pd.Index, h: int, season: int, lags: int, step: pd.Timedelta,
              level: np.ndarray) -> _Design:
    T, E = Y.shape
    Yf = _ffill(Y, season)
    cols: list[np.ndarray] = []
    names: list[str] = []
    for k in range(lags):
        cols.append(_shift(Yf, k))
        names.append(f"lag{k}")
    recent = pd.DataFrame(Yf).rolling(max(lags, 2), min_periods=1).mean().to_numpy()
    cols.append(recent)
    names.append("recent_mean")
    day = pd.DataFrame(Yf).rolling(season, min_periods=max(1, season // 2)).mean().to_numpy()
    cols.append(day)
    names.append("season_mean")
    back = season * int(np.ceil(h / season)) - h  # y(t + h − s·⌈h/s⌉), known at t
    for j in (-1, 0, 1):
        cols.append(_shift(Yf, back + j) if back + j >= 0 else _shift(Yf, back))
        names.append(f"seasonal{j:+d}")
    cols.append(np.broadcast_to(level, (T, E)).astype(float))
    names.append("level")
    target_t = pd.DatetimeIndex(times) + h * step
    tod = (target_t.hour * 3600 + target_t.minute * 60 + target_t.second).to_numpy() / 86400.0
    for name, v in (("tod_sin", np.sin(2 * np.pi * tod)), ("tod_cos", np.cos(2 * np.pi * tod)),
                    ("weekend", (target_t.day_of_week >= 5).astype(float))):
        cols.append(np.broadcast_to(np.asarray(v, dtype=float)[:, None], (T, E)))
        names.append(name)
    X = np.stack(cols, axis=-1).reshape(T * E, len(cols))
    y = _shift(Y, -h).reshape(T * E)
    return _Design(X, y, names)


# ---------------------------------------------------------------------------------------------
# forecaster
# ---------------------------------------------------------------------------------------------

@dataclass
class Forecaster:
    """One forecasting model over a property of many entities.

    Parameters
    ----------
    model
        ``persistence``, ``seasonal_naive``, ``ridge`` or ``gbrt``.
    freq
        Grid step (``1h``, ``5min`` …).
    season
        Season length (``1D``: the same time yesterday).
    horizons
        Lead times (``"1h"`` … or numbers of steps).
    lags
        Number of recent steps used as features by the learned models (default: one hour's worth,
        at least 3).
    alpha
        Ridge penalty.
    max_train_rows
        Learned models train on at most this many rows (a seeded random sample).
    """

    model: str = "ridge"
    freq: str = "1h"
    season: str = "1D"
    horizons: Sequence[str | int] = DEFAULT_HORIZONS
    lags: int | None = None
    alpha: float = 1.0
    max_train_rows: int = 100_000
    random_state: int = 0
    property: str | None = None
    _fitted: dict[int, Any] = field(default_factory=dict, init=False, repr=False)
    _level: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise InputError(f"unknown model {self.model!r}", field="model", hint=", ".join(MODELS))
        try:
            self._step = pd.Timedelta(self.freq)
        except ValueError as exc:
            raise InputError(f"bad frequency {self.freq!r}", field="freq") from exc
        self._season = _steps(self.season, self._step, "season")
        self._h = sorted({_steps(h, self._step, "horizon") for h in self.horizons})
        per_hour = max(1, int(pd.Timedelta("1h") / self._step))
        self._lags = self.lags if self.lags is not None else max(3, per_hour)

    @builtins.property
    def learned(self) -> bool:
        """True for models that must be fitted."""
        return self.model in LEARNED

    def _new(self) -> Any:
        if self.model == "ridge":
            from sklearn.linear_model import Ridge
            from sklearn.pipeline import make_pipeline
            from sklearn.preprocessing import StandardScaler

            return make_pipeline(StandardScaler(), Ridge(alpha=self.alpha))
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(loss="absolute_error", max_iter=100, learning_rate=0.1,
                                             max_leaf_nodes=31, early_stopping=False,
                                             random_state=self.random_state)

    def fit(self, obs: pd.DataFrame | None = None, *, grid: pd.DataFrame | None = None,
            until: Any = None) -> Forecaster:
        """Fit the learned model on data up to ``until`` (targets included); baselines need no fit.

        Give long observations (``obs``) or a ready grid (``grid``, from :func:`to_grid`).
        """
        if not self.learned:
            return self
        g = self._grid(obs, grid)
        if until is not None:
            g = g.loc[: pd.Timestamp(until)]
        Y = g.to_numpy(dtype=float)
        if np.isfinite(Y).sum() < 10 * (self._season + max(self._h)):
            raise InputError("too little history to fit a learned forecast model", field="until",
                             hint=f"need several seasons of {self.freq} data before {until}")
        self._level = {str(c): float(v) for c, v in g.mean().items()}
        level = np.array([self._level[str(c)] for c in g.columns])
        rng = np.random.default_rng(self.random_state)
        self._fitted = {}
        for h in self._h:
            d = _features(Y, g.index, h, self._season, self._lags, self._step, level)
            ok = np.isfinite(d.y)
            if self.model == "ridge":
                ok &= np.isfinite(d.X).all(axis=1)
            idx = np.flatnonzero(ok)
            if len(idx) > self.max_train_rows:
                idx = np.sort(rng.choice(idx, self.max_train_rows, replace=False))
            if len(idx) < 10:
                raise InputError(f"no complete training rows for horizon {h} steps", field="until")
            m = self._new()
            m.fit(d.X[idx], d.y[idx])
            self._fitted[h] = m
        return self

    def _grid(self, obs: pd.DataFrame | None, grid: pd.DataFrame | None) -> pd.DataFrame:
        if grid is not None:
            return grid
        if obs is None:
            raise InputError("give observations or a grid", field="obs")
        return to_grid(obs, property=self.property, freq=self.freq)

    def predict(self, obs: pd.DataFrame | None = None, *, grid: pd.DataFrame | None = None,
                issued_from: Any = None, issued_until: Any = None, every: int = 1,
                property: str | None = None) -> pd.DataFrame:
        """Forecast records issued at the grid times in ``[issued_from, issued_until]``.

        By default one issue time: the last grid time (a live forecast). ``every`` thins the issue
        times (every n-th step). Only data at or before each issue time is used.
        """
        g = self._grid(obs, grid)
        if self.learned and not self._fitted:
            raise InputError(f"model {self.model} is not fitted", hint="call fit() first")
        prop = property or self.property or "value"
        if obs is not None and property is None and self.property is None and "property" in obs.columns:
            prop = str(obs["property"].iloc[0])
        times = g.index
        lo = pd.Timestamp(issued_from) if issued_from is not None else (
            times[-1] if issued_until is None else times[0])
        hi = pd.Timestamp(issued_until) if issued_until is not None else times[-1]
        issue_idx = np.flatnonzero((times >= lo) & (times <= hi))[:: max(1, every)]
        if len(issue_idx) == 0:
            return pd.DataFrame(columns=RECORD_COLUMNS)
        Y = g.to_numpy(dtype=float)
        ents = np.asarray([str(c) for c in g.columns])
        E = Y.shape[1]
        out = []
        level = np.array([self._level.get(e, np.nan) for e in ents]) if self.learned else None
        for h in self._h:
            if self.model == "persistence":
                pred = _ffill(Y, self._season)[issue_idx]
            elif self.model == "seasonal_naive":
                back = self._season * int(np.ceil(h / self._season)) - h
                pred = _shift(Y, back)[issue_idx]
            else:
                assert level is not None
                d = _features(Y, times, h, self._season, self._lags, self._step, level)
                rows = (issue_idx[:, None] * E + np.arange(E)[None, :]).reshape(-1)
                X = d.X[rows]
                ok = np.isfinite(X).all(axis=1) if self.model == "ridge" else np.isfinite(X).any(axis=1)
                p = np.full(len(rows), np.nan)
                if ok.any():
                    p[ok] = self._fitted[h].predict(X[ok])
                pred = p.reshape(len(issue_idx), E)
            issued = np.repeat(times[issue_idx].to_numpy(), E)
            rec = pd.DataFrame({
                "entity": np.tile(ents, len(issue_idx)), "property": prop, "issued_at": issued,
                "target_time": issued + np.timedelta64(h * self._step.value, "ns"),
                "horizon": pd.Timedelta(h * self._step), "steps": h, "model": self.model,
                "value": pred.reshape(-1),
            })
            out.append(rec[np.isfinite(rec["value"].to_numpy())])
        res = pd.concat(out, ignore_index=True)
        res["target_time"] = pd.to_datetime(res["target_time"]).astype(res["issued_at"].dtype)
        return res[RECORD_COLUMNS]


def backtest(obs: pd.DataFrame | None = None, *, grid: pd.DataFrame | None = None, property: str | None = None,
             train_until: Any, test_until: Any = None, freq: str = "1h", season: str = "1D",
             horizons: Sequence[str | int] = DEFAULT_HORIZONS,
             models: Iterable[str] = ("persistence", "seasonal_naive", "ridge"), every: int = 1,
             **model_options: Any) -> pd.DataFrame:
    """Fit learned models on data up to ``train_until`` and issue forecasts at every later grid time.

    Returns the forecast records of all ``models`` (issue times after ``train_until`` up to
    ``test_until``, thinned by ``every``). Score them with :func:`score`.
    """
    g = grid if grid is not None else to_grid(obs if obs is not None else pd.DataFrame(),
                                              property=property, freq=freq)
    if property is None and obs is not None and "property" in obs.columns:
        property = str(obs["property"].iloc[0])
    t0 = pd.Timestamp(train_until)
    if not g.index[0] < t0 < g.index[-1]:
        raise InputError(f"train_until {t0} must fall inside the data ({g.index[0]} .. {g.index[-1]})",
                         field="train_until")
    out = []
    for m in models:
        f = Forecaster(m, freq=freq, season=season, horizons=horizons, property=property, **model_options)
        f.fit(grid=g, until=t0)
        first = g.index[g.index > t0][0]
        out.append(f.predict(grid=g, issued_from=first, issued_until=test_until, every=every,
                             property=property))
    return pd.concat(out, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# verification
# ---------------------------------------------------------------------------------------------

def _actuals(actuals: pd.DataFrame) -> pd.DataFrame:
    for col in ("entity", "time", "value"):
        if col not in actuals.columns:
            raise InputError(f"actuals lack column {col!r}", field=col)
    a = pd.DataFrame({"entity": actuals["entity"].astype(str).to_numpy(),
                      "target_time": pd.to_datetime(actuals["time"]).to_numpy(),
                      "actual": pd.to_numeric(actuals["value"], errors="coerce").astype(float).to_numpy()})
    keys = ["entity", "target_time"]
    if "property" in actuals.columns:
        a["property"] = actuals["property"].astype(str).to_numpy()
        keys.append("property")
    return a.dropna(subset=["actual"]).groupby(keys, as_index=False).agg(actual=("actual", "mean"))


def verify(forecasts: pd.DataFrame, actuals: pd.DataFrame) -> pd.DataFrame:
    """Forecast records with the actual value and error (``value − actual``) where the actual is known.

    ``actuals`` are long observations (``entity``, ``time``, ``value``, optionally ``property``) at
    the forecasts' grid times (aggregate them with :func:`to_grid` first if they are finer).
    Forecasts whose target has no actual yet keep NaN (still to be verified).
    """
    missing = [c for c in RECORD_COLUMNS if c not in forecasts.columns]
    if missing:
        raise InputError(f"forecast records lack column(s) {', '.join(missing)}", field=missing[0])
    a = _actuals(actuals)
    f = forecasts.copy()
    f["entity"] = f["entity"].astype(str)
    f["target_time"] = pd.to_datetime(f["target_time"])
    a["target_time"] = a["target_time"].astype(f["target_time"].dtype)
    keys = ["entity", "target_time"] + (["property"] if "property" in a.columns else [])
    out = f.merge(a, on=keys, how="left")
    out["error"] = out["value"] - out["actual"]
    return out


def score(forecasts: pd.DataFrame, actuals: pd.DataFrame, *, baseline: str = BASELINE,
          common: bool = True, by: Sequence[str] = ()) -> pd.DataFrame:
    """MAE per model and horizon, and skill against the baseline.

    Parameters
    ----------
    forecasts
        Records from :class:`Forecaster` / :func:`backtest`.
    actuals
        Observations (see :func:`verify`).
    baseline
        Model the skill is measured against (``seasonal_naive``).
    common
        Score every model on the same cases: the (entity, issue time, horizon) for which all models
        issued a forecast and the actual is known.
    by
        Further columns to score separately (e.g. ``("entity",)``, or ``("entity", "property")``);
        the skill then compares with the baseline's MAE in the same group.

    Returns
    -------
    DataFrame
        ``by`` columns, ``model``, ``horizon``, ``steps``, ``n``, ``mae``, ``rmse``, ``bias`` (mean
        error), ``baseline_mae``, ``skill`` (1 − mae / baseline_mae; > 0: better than the baseline;
        NaN where the baseline has no scored case).
    """
    v = verify(forecasts, actuals).dropna(subset=["actual"])
    if v.empty:
        raise InputError("no forecast has a known actual yet", hint="score after the target times")
    key = ["entity", "property", "issued_at", "steps"]
    if common:
        n_models = v["model"].nunique()
        cnt = v.groupby(key)["model"].transform("nunique")
        v = v[cnt == n_models]
    by = list(by)
    bad = [c for c in by if c not in v.columns]
    if bad:
        raise InputError(f"cannot score by {bad[0]!r}: not a forecast column", field="by")
    v = v.assign(abs_err=v["error"].abs(), sq_err=v["error"] ** 2)
    s = v.groupby([*by, "model", "steps"], as_index=False).agg(
        horizon=("horizon", "first"), n=("error", "size"), mae=("abs_err", "mean"),
        rmse=("sq_err", "mean"), bias=("error", "mean"))
    s["rmse"] = np.sqrt(s["rmse"])
    base = s.loc[s["model"] == baseline, [*by, "steps", "mae"]].rename(columns={"mae": "baseline_mae"})
    s = s.merge(base, on=[*by, "steps"], how="left")
    s["skill"] = 1.0 - s["mae"] / s["baseline_mae"]
    return s[[*by, "model", "horizon", "steps", "n", "mae", "rmse", "bias", "baseline_mae", "skill"]]


def mae_table(scores: pd.DataFrame, value: str = "mae") -> pd.DataFrame:
    """Scores as a table: one row per horizon, one column per model (``value``: mae or skill)."""
    t = scores.pivot_table(index="horizon", columns="model", values=value)
    t.columns.name = None
    return t


def compare(series: pd.Series | pd.DataFrame, *, horizon: int = 6, freq: str | None = None,
            season: str = "1D", models: Iterable[str] = ("persistence", "seasonal_naive", "ridge"),
            test_fraction: float = 0.25, every: int = 1) -> pd.DataFrame:
    """Backtest models on one series (or a time × entity frame) and return the scores.

    The last ``test_fraction`` of the period is forecast ``1 … horizon`` steps ahead from every
    ``every``-th step; the learned models train on the rest. A convenience for the CLI.

    Parameters
    ----------
    series
        Values indexed by time (a Series), or a frame indexed by time with one column per entity.
    horizon
        Largest lead time in steps of ``freq``.
    freq
        Grid step; inferred from the index (its most common spacing) when not given.

    Returns
    -------
    DataFrame
        As :func:`score`, with ``horizon`` written as text (``1h``, ``30min``).

    Examples
    --------
    >>> t = pd.date_range("2024-01-01", periods=24 * 30, freq="h")
    >>> s = pd.Series(10 + 5 * np.sin(2 * np.pi * t.hour / 24), index=t)
    >>> out = compare(s, horizon=2, models=("seasonal_naive", "persistence"))
    >>> out[["model", "horizon"]].values.tolist()
    [['persistence', '1h'], ['persistence', '2h'], ['seasonal_naive', '1h'], ['seasonal_naive', '2h']]
    >>> out.groupby("model")["mae"].max().round(3).to_dict()  # a pure daily cycle: yesterday is exact
    {'persistence': 1.628, 'seasonal_naive': 0.0}
    """
    frame = series.to_frame("series") if isinstance(series, pd.Series) else series
    if frame.empty:
        raise InputError("empty series", field="series")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "could not infer format" for non-dates
            idx = pd.DatetimeIndex(pd.to_datetime(frame.index))
    except (ValueError, TypeError) as exc:
        raise InputError("the series must be indexed by time", field="series") from exc
    frame = frame.set_axis(idx).sort_index()
    frame = frame[~frame.index.duplicated(keep="last")]
    if not 0 < test_fraction < 1:
        raise InputError("test_fraction must be between 0 and 1", field="test_fraction")
    if freq is None:
        d = pd.Series(frame.index).diff().dropna()
        if d.empty:
            raise InputError("cannot infer the time step from one point", field="freq")
        step = d.mode().iloc[0]
    else:
        try:
            step = pd.Timedelta(freq)
        except ValueError as exc:
            raise InputError(f"bad frequency {freq!r}", field="freq") from exc
    obs = frame.rename_axis("time").reset_index().melt(id_vars="time", var_name="entity", value_name="value")
    obs["property"] = "value"
    t0, t1 = frame.index[0], frame.index[-1]
    cut = (t0 + (t1 - t0) * (1 - test_fraction)).floor(step)
    fc = backtest(obs, property="value", train_until=cut, freq=str(pd.Timedelta(step)), season=season,
                  horizons=list(range(1, int(horizon) + 1)), models=models, every=every)
    s = score(fc, obs)
    s["horizon"] = [fmt_td(h) for h in s["horizon"]]
    return s


def fmt_td(td: pd.Timedelta) -> str:
    secs = int(pd.Timedelta(td).total_seconds())
    for unit, n in (("D", 86400), ("h", 3600), ("min", 60)):
        if secs % n == 0:
            return f"{secs // n}{unit}"
    return f"{secs}s"
