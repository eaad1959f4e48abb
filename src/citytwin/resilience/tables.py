"""Regression tables and coefficient plots (C3).

:func:`regression_table` lays out several :class:`~citytwin.resilience.results.PanelResult` side by
side, the way papers do: each term's estimate with stars (``*`` p < 0.1, ``**`` p < 0.05, ``***``
p < 0.01 by default) and its standard error in parentheses below; then one row per fixed effect
(Yes/No), the cluster counts, N, R² and within R². The :class:`RegressionTable` renders as HTML,
LaTeX (booktabs) and Word ``.docx`` (python-docx). :func:`coef_plot` draws estimates with confidence
intervals (matplotlib, PNG).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from citytwin.resilience.results import PanelResult

STARS: tuple[tuple[float, str], ...] = ((0.01, "***"), (0.05, "**"), (0.1, "*"))


def stars(p: float, levels: Sequence[tuple[float, str]] = STARS) -> str:
    """The star string of a p-value (the first level it is below)."""
    if p is None or not np.isfinite(p):
        return ""
    for cut, s in sorted(levels):
        if p < cut:
            return s
    return ""


@dataclass
class RegressionTable:
    """A regression table: ``body`` holds the text of each cell (rows × model columns)."""

    body: pd.DataFrame
    title: str = ""
    notes: list[str] = field(default_factory=list)
    n_coef_rows: int = 0

    def to_html(self) -> str:
        """A self-contained HTML ``<table>``."""
        cols = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.body.columns)
        out = [f"<table class='regression'>{f'<caption>{html.escape(self.title)}</caption>' if self.title else ''}",
               f"<thead><tr><th></th>{cols}</tr></thead><tbody>"]
        for i, (label, row) in enumerate(self.body.iterrows()):
            style = " style='border-top:1px solid #000'" if i == self.n_coef_rows else ""
            cells = "".join(f"<td>{html.escape(str(v))}</td>" for v in row)
            out.append(f"<tr{style}><th>{html.escape(str(label))}</th>{cells}</tr>")
        out.append("</tbody></table>")
        out += [f"<p class='note'>{html.escape(n)}</p>" for n in self.notes]
        return "\n".join(out)

    def to_latex(self) -> str:
        """A LaTeX ``tabular`` (booktabs rules; special characters escaped)."""
        def esc(s: Any) -> str:
            t = str(s)
            for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                         ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"),
                         ("^", r"\textasciicircum{}")):
                t = t.replace(a, b)
            return t.replace("\\textbackslash\\{\\}", "\\textbackslash{}")

        def cell(v: Any) -> str:
            t = esc(v)
            n = len(t) - len(t.rstrip("*"))
            return f"{t[:len(t) - n]}$^{{{'*' * n}}}$" if n else t

        k = len(self.body.columns)
        lines = [r"\begin{tabular}{l" + "c" * k + "}", r"\toprule",
                 " & " + " & ".join(esc(c) for c in self.body.columns) + r" \\", r"\midrule"]
        for i, (label, row) in enumerate(self.body.iterrows()):
            if i == self.n_coef_rows:
                lines.append(r"\midrule")
            lines.append(esc(label) + " & " + " & ".join(cell(v) for v in row) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        lines += [f"% {n}" for n in self.notes]
        return "\n".join(lines)

    def to_docx(self, path: str | Path) -> Path:
        """Write a Word document holding the table (and the title and notes)."""
        import docx

        d = docx.Document()
        if self.title:
            d.add_heading(self.title, level=2)
        t = d.add_table(rows=len(self.body) + 1, cols=len(self.body.columns) + 1)
        t.cell(0, 0).text = ""
        for j, c in enumerate(self.body.columns):
            t.cell(0, j + 1).text = str(c)
        for i, (label, row) in enumerate(self.body.iterrows()):
            t.cell(i + 1, 0).text = str(label)
            for j, v in enumerate(row):
                t.cell(i + 1, j + 1).text = str(v)
        for n in self.notes:
            d.add_paragraph(n)
        p = Path(path)
        d.save(str(p))
        return p


def regression_table(
    results: Sequence[PanelResult],
    *,
    names: Sequence[str] | None = None,
    terms: Sequence[str] | None = None,
    labels: dict[str, str] | None = None,
    digits: int = 3,
    star_levels: Sequence[tuple[float, str]] = STARS,
    title: str = "",
) -> RegressionTable:
    """Lay out models side by side.

    Parameters
    ----------
    results
        The fitted models.
    names
        Column headings (default ``(1)``, ``(2)`` ...).
    terms
        Terms to show, in order (default: every term, in order of first appearance).
    labels
        Term -> label shown.
    digits
        Decimals of estimates and errors.
    star_levels
        ``(p cut, stars)`` pairs.
    title
        Caption.

    Returns
    -------
    RegressionTable
    """
    cols = list(names) if names else [f"({i + 1})" for i in range(len(results))]
    if terms is None:
        seen: dict[str, None] = {}
        for r in results:
            seen |= dict.fromkeys(r.coefficients["term"])
        terms = list(seen)
    lab = labels or {}
    rows: dict[str, list[str]] = {}
    fmt = f"{{:.{digits}f}}"
    for t in terms:
        est, se = [], []
        for r in results:
            hit = r.coefficients[r.coefficients["term"] == t]
            if hit.empty:
                est.append("")
                se.append("")
                continue
            h = hit.iloc[0]
            est.append(fmt.format(h["estimate"]) + stars(h["p"], star_levels))
            se.append(f"({fmt.format(h['std_error'])})")
        rows[lab.get(t, t)] = est
        rows[f"{lab.get(t, t)} "] = se  # the error row (label kept unique with a trailing space)
    n_coef = len(rows)
    fes: dict[str, None] = {}
    cls: dict[str, None] = {}
    for r in results:
        fes |= dict.fromkeys(r.info.get("fe", []) or [])
        cls |= dict.fromkeys((r.info.get("clusters") or {}).keys())
    for f in fes:
        rows[f"{f} FE"] = ["Yes" if f in (r.info.get("fe") or []) else "No" for r in results]
    for c in cls:
        rows[f"Clusters ({c})"] = [str((r.info.get("clusters") or {}).get(c, "")) for r in results]
    rows["N"] = [str(r.nobs) for r in results]
    rows["R²"] = [fmt.format(r.info["r2"]) if r.info.get("r2") is not None else "" for r in results]
    if any(r.info.get("r2_within") is not None for r in results):
        rows["R² within"] = [fmt.format(r.info["r2_within"]) if r.info.get("r2_within") is not None else ""
                             for r in results]
    body = pd.DataFrame.from_dict(rows, orient="index", columns=cols)
    cuts = ", ".join(f"{s} p < {c}" for c, s in sorted(star_levels))
    notes = [f"Standard errors in parentheses; {cuts}."]
    vc = sorted({str(r.info.get("vcov")) for r in results if r.info.get("vcov")})
    if vc:
        notes.append(f"Covariance: {', '.join(vc)}.")
    return RegressionTable(body=body, title=title, notes=notes, n_coef_rows=n_coef)


def coef_plot(results: Sequence[PanelResult], path: str | Path, *, terms: Sequence[str] | None = None,
              names: Sequence[str] | None = None, level: float = 0.95, title: str = "") -> Path:
    """Estimates with ``level`` confidence intervals (normal quantile), one marker per model; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(names) if names else [f"({i + 1})" for i in range(len(results))]
    if terms is None:
        terms = list(dict.fromkeys(t for r in results for t in r.coefficients["term"] if t != "Intercept"))
    z = float(stats.norm.ppf(0.5 + level / 2))
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(terms) * max(1, len(results)) ** 0.5))
    k = len(results)
    for j, (r, n) in enumerate(zip(results, names, strict=True)):
        c = r.coefficients.set_index("term").reindex(list(terms))
        ypos = np.arange(len(terms)) + (j - (k - 1) / 2) * 0.8 / max(k, 1)
        ax.errorbar(c["estimate"], ypos, xerr=z * c["std_error"], fmt="o", capsize=3, label=n)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(np.arange(len(terms)), list(terms))
    ax.invert_yaxis()
    ax.set_xlabel(f"estimate ({int(level * 100)} % interval)")
    if title:
        ax.set_title(title)
    if k > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p
