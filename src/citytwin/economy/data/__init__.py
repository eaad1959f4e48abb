"""Reference tables shipped with citytwin.economy (each names its source in its header comment).

* ``seed000_table1_digital_economy_vs_gdp.csv`` — seed 000 Table 1 (digital-economy rank vs GDP rank).
* ``regions_nbs2011.csv`` — province -> east/central/west/northeast (NBS 2011) and north/south.
* ``city_clusters_13th_fyp.csv`` — the 19 city clusters of the 13th Five-Year Plan.
* ``city_cluster_members.csv`` — prefecture members of the clusters whose plans list them.

These are package resources (read-only, part of the code), not user data.

Examples
--------
>>> load("seed000_table1_digital_economy_vs_gdp").set_index("city_en").loc["Guiyang", "gdp_rank_2020"]
np.int64(52)
>>> source_of("regions_nbs2011")[:5]
'Four '
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import pandas as pd

from citytwin.foundation.errors import NotFoundError

TABLES = ("seed000_table1_digital_economy_vs_gdp", "regions_nbs2011", "city_clusters_13th_fyp",
          "city_cluster_members")


def _path(name: str) -> Any:
    if name not in TABLES:
        raise NotFoundError(f"no shipped table {name!r}", hint=f"tables: {', '.join(TABLES)}")
    return resources.files("citytwin.economy.data").joinpath(f"{name}.csv")


def load(name: str) -> pd.DataFrame:
    """A shipped table as a DataFrame (its ``#`` header comment, the source, is skipped)."""
    with _path(name).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh, comment="#")


def source_of(name: str) -> str:
    """The header comment of a shipped table (where its data comes from), as one string."""
    with _path(name).open("r", encoding="utf-8") as fh:
        lines = [ln[1:].strip() for ln in fh if ln.startswith("#")]
    return " ".join(lines)
