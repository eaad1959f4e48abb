"""Regression tables in HTML, LaTeX and Word, and the coefficient plot."""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pandas as pd

from citytwin.resilience.panel import fit_fe
from citytwin.resilience.tables import coef_plot, regression_table, stars


def models() -> list:
    rng = np.random.default_rng(0)
    f = pd.DataFrame([(u, t) for u in range(20) for t in range(2001, 2011)], columns=["city", "year"])
    f["x"] = rng.normal(size=len(f))
    f["z"] = rng.normal(size=len(f))
    f["y"] = 0.5 * f["x"] + 0.01 * f["z"] + rng.normal(size=len(f))
    return [fit_fe(f, "y", "x", fe=["city", "year"], cluster="city", unit="city", time="year"),
            fit_fe(f, "y", ["x", "z"], fe=["city"], cluster="city", unit="city", time="year")]


def test_stars() -> None:
    assert (stars(0.005), stars(0.03), stars(0.07), stars(0.2), stars(float("nan"))) == ("***", "**", "*", "", "")


def test_table_formats(tmp_path: Path) -> None:
    ms = models()
    t = regression_table(ms, names=["FE2", "FE1"], title="Resilience")
    b = t.body
    x = ms[0].row("x")
    assert b.loc["x", "FE2"] == f"{x['estimate']:.3f}{stars(x['p'])}"
    assert b.loc["x ", "FE2"] == f"({x['std_error']:.3f})"
    assert b.loc["z", "FE2"] == "" and b.loc["year FE", "FE1"] == "No" and b.loc["city FE", "FE1"] == "Yes"
    assert b.loc["Clusters (city)", "FE2"] == "20" and b.loc["N", "FE1"] == "200"
    h = t.to_html()
    assert h.count("<tr") == len(b) + 1 and "Resilience" in h
    ElementTree.fromstring(h.split("\n<p")[0])  # well-formed XML table
    tex = t.to_latex()
    assert tex.startswith(r"\begin{tabular}{lcc}") and r"\midrule" in tex and "R²" in tex
    assert tex.count(r" \\") == len(b) + 1
    p = t.to_docx(tmp_path / "t.docx")
    with zipfile.ZipFile(p) as z:
        doc = ElementTree.fromstring(z.read("word/document.xml"))
    ns = {"w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main"}
    cells = ["".join(x.text or "" for x in c.iter(f"{{{ns['w']}}}t")) for c in doc.iter(f"{{{ns['w']}}}tc")]
    assert len(cells) == (len(b) + 1) * 3 and b.loc["x", "FE2"] in cells
    import docx

    assert len(docx.Document(str(p)).tables[0].rows) == len(b) + 1


def test_coef_plot(tmp_path: Path) -> None:
    p = coef_plot(models(), tmp_path / "c.png", names=["a", "b"])
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 2000
