"""A street network in west-east parts with halos, for a shortest-path search larger than one worker (issue 19).

A search bounded by ``radius`` metres from a node only reaches nodes within ``radius`` of it along the
streets, and so (when no edge is shorter than the straight line between its nodes) within ``radius`` as
the crow flies. Each part therefore holds the nodes of its west-east band (its **own** nodes, bands cut at
quantiles of x so that they hold as many nodes each) plus every node within ``radius`` of the band (the
**halo**), and the edges between them: a bounded search from any own node on the part's graph gives
exactly what it gives on the whole graph. Edge lengths are checked against the straight line
(:func:`build_part` raises otherwise).

Connected components are labelled per part, then merged (:func:`merge_components`): a halo node is the
same node as in its owner's part, and edges longer than ``radius`` that leave a part's held nodes join
two parts' components too; the merged labels are numbered as :func:`citytwin.spatial.network.network_graph`
numbers them (0 = the largest, ties by the smallest node index), so they are the same numbers.

Everything here is arrays in, arrays out (no I/O); ``citytwin.workflows.scaleout`` reads the files and
runs one part per Dask worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from citytwin.foundation.errors import InputError
from citytwin.spatial.network import MIN_LENGTH, symmetric_csr

#: relative slack of the straight-line check (lengths rounded in the source, e.g. to the millimetre)
CHORD_SLACK = 1e-9


def band_bounds(x: np.ndarray, parts: int) -> np.ndarray:
    """The ``parts + 1`` x bounds of the bands (quantiles of the nodes' x; first -inf, last +inf).

    Examples
    --------
    >>> band_bounds(np.arange(10.0), 2).tolist()
    [-inf, 4.5, inf]
    """
    if parts < 1:
        raise InputError("parts must be >= 1", field="parts")
    inner = np.quantile(x, np.arange(1, parts) / parts) if parts > 1 else np.empty(0)
    return np.concatenate([[-np.inf], inner, [np.inf]])


def owner_of(x: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """The part that owns a node at each ``x`` (its band: ``bounds[p] <= x < bounds[p + 1]``).

    Examples
    --------
    >>> owner_of(np.array([0.0, 4.5, 9.0]), np.array([-np.inf, 4.5, np.inf])).tolist()
    [0, 1, 1]
    """
    return np.searchsorted(bounds, x, side="right").astype(np.int64) - 1


@dataclass
class NetworkPart:
    """One part of a street network: its own band's nodes and a halo, their graph and local components.

    Attributes
    ----------
    part, bounds, radius
        The part's number, the bands' x bounds, the halo width (m).
    held
        Global node indices held (own and halo), ascending; local index i = ``held[i]``.
    own
        Whether each held node is the part's own.
    graph
        Symmetric CSR of the edges between held nodes (local indices, lengths in m).
    labels
        Connected-component label of each held node in ``graph`` (local numbering).
    halo
        (global index, owner part, local label) of each halo node.
    cross
        (global index of an own node, its local label, global index of a node not held, its owner): edges
        that leave the held nodes (longer than the halo: they matter for components, not for the search).
    """

    part: int
    bounds: np.ndarray
    radius: float
    held: np.ndarray
    own: np.ndarray
    graph: sparse.csr_matrix
    labels: np.ndarray
    halo: np.ndarray
    cross: np.ndarray

    def local(self, nodes: np.ndarray) -> np.ndarray:
        """Local index of each global node index (-1 where not held)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        i = np.searchsorted(self.held, nodes)
        i = np.minimum(i, max(len(self.held) - 1, 0))
        found = (self.held[i] == nodes) if len(self.held) else np.zeros(len(nodes), dtype=bool)
        return np.where(found, i, -1)

    def summary(self) -> dict[str, np.ndarray]:
        """What :func:`merge_components` needs from this part: per local label, own nodes and the smallest
        own global index; the halo and the edges that leave."""
        ncomp = int(self.labels.max()) + 1 if len(self.labels) else 0
        own_labels = self.labels[self.own]
        counts = np.bincount(own_labels, minlength=ncomp)
        first = np.full(ncomp, np.iinfo(np.int64).max, dtype=np.int64)
        lab, at = np.unique(own_labels, return_index=True)  # held is ascending: the first is the smallest
        first[lab] = self.held[self.own][at]
        return {"counts": counts, "first": first, "halo": self.halo, "cross": self.cross}


def build_part(part: int, xy: np.ndarray, bounds: np.ndarray, radius: float,
               edges: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> NetworkPart:
    """Part ``part`` of a network: nodes ``xy`` (all of them, global index = row), ``edges`` in batches of
    (global u, global v, length m), already checked for unknown nodes and bad lengths.

    Raises
    ------
    InputError
        An edge touching the part's nodes shorter than the straight line between its nodes (the halo would
        not hold every node a search can reach).

    Examples
    --------
    >>> xy = np.array([[0.0, 0], [100, 0], [200, 0], [300, 0]])
    >>> e = [(np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([100.0, 100, 100]))]
    >>> p = build_part(0, xy, band_bounds(xy[:, 0], 2), 120.0, e)
    >>> p.held.tolist(), p.own.tolist(), p.graph.nnz
    ([0, 1, 2], [True, True, False], 4)
    """
    x = xy[:, 0]
    lo, hi = bounds[part], bounds[part + 1]
    held_mask = (x >= lo - radius) & (x < hi + radius)
    own_mask = (x >= lo) & (x < hi)
    held = np.flatnonzero(held_mask).astype(np.int64)
    local = np.full(len(x), -1, dtype=np.int64)
    local[held] = np.arange(len(held))
    lu, lv, lw, cross = [], [], [], []
    for u, v, length in edges:
        touch = held_mask[u] | held_mask[v]
        u, v, length = u[touch], v[touch], length[touch]
        chord = np.hypot(xy[u, 0] - xy[v, 0], xy[u, 1] - xy[v, 1])
        short = length < chord * (1 - CHORD_SLACK)
        if short.any():
            i = int(np.flatnonzero(short)[0])
            raise InputError(f"edge {int(u[i])}-{int(v[i])} (node indices) is {length[i]:.3f} m long, shorter than the "
                             f"{chord[i]:.3f} m between its nodes: the partitioned search needs lengths of at "
                             "least the straight line", field="length",
                             hint="run life circles without partitions, or fix the edge lengths")
        both = held_mask[u] & held_mask[v]
        lu.append(local[u[both]])
        lv.append(local[v[both]])
        lw.append(np.maximum(length[both], MIN_LENGTH))
        for a, b in ((u, v), (v, u)):  # an own node, the other end not held
            out = own_mask[a] & ~held_mask[b]
            if out.any():
                cross.append(np.column_stack([a[out], b[out]]))
    m = len(held)
    graph = symmetric_csr(np.concatenate(lu) if lu else np.empty(0, np.int64),
                          np.concatenate(lv) if lv else np.empty(0, np.int64),
                          np.concatenate(lw) if lw else np.empty(0), m)
    del lu, lv, lw
    labels = connected_components(graph, directed=False)[1].astype(np.int64) if m else np.empty(0, np.int64)
    own = own_mask[held]
    halo_nodes = held[~own]
    halo = np.column_stack([halo_nodes, owner_of(x[halo_nodes], bounds), labels[~own]])
    pairs = np.concatenate(cross) if cross else np.empty((0, 2), dtype=np.int64)
    cross_arr = np.column_stack([pairs[:, 0], labels[local[pairs[:, 0]]] if len(pairs) else np.empty(0, np.int64),
                                 pairs[:, 1], owner_of(x[pairs[:, 1]], bounds)]).astype(np.int64)
    return NetworkPart(part=part, bounds=bounds, radius=radius, held=held, own=own, graph=graph, labels=labels,
                       halo=halo.astype(np.int64), cross=cross_arr)


def wanted_labels(summaries: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """Per part, the global indices of its own nodes whose local label the merge needs (others' halos
    and the far ends of the edges that leave)."""
    want: list[list[np.ndarray]] = [[] for _ in summaries]
    for s in summaries:
        for q in range(len(summaries)):
            want[q].append(s["halo"][s["halo"][:, 1] == q, 0])
            want[q].append(s["cross"][s["cross"][:, 3] == q, 2])
    return [np.unique(np.concatenate(w)) if w else np.empty(0, np.int64) for w in want]


def merge_components(summaries: list[dict[str, np.ndarray]], answers: list[tuple[np.ndarray, np.ndarray]]
                     ) -> tuple[list[np.ndarray], np.ndarray]:
    """Global component labels from the parts' local ones.

    Parameters
    ----------
    summaries
        :meth:`NetworkPart.summary` of each part.
    answers
        Per part, (global indices asked by :func:`wanted_labels`, their local labels there).

    Returns
    -------
    (per part, the global label of each local label), nodes per global label.
    """
    offset = np.cumsum([0] + [len(s["counts"]) for s in summaries])
    total = int(offset[-1])

    def vertex(part: np.ndarray, label: np.ndarray) -> np.ndarray:
        return offset[part] + label

    def label_at(q: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        out = np.empty(len(nodes), dtype=np.int64)
        for k in np.unique(q):
            asked, lab = answers[int(k)]
            sel = q == k
            out[sel] = lab[np.searchsorted(asked, nodes[sel])]
        return out

    a, b = [], []
    for p, s in enumerate(summaries):
        h, c = s["halo"], s["cross"]
        a.append(vertex(np.full(len(h), p), h[:, 2]))
        b.append(vertex(h[:, 1], label_at(h[:, 1], h[:, 0])))
        a.append(vertex(np.full(len(c), p), c[:, 1]))
        b.append(vertex(c[:, 3], label_at(c[:, 3], c[:, 2])))
    ea, eb = np.concatenate(a).astype(np.int64), np.concatenate(b).astype(np.int64)
    g = sparse.csr_matrix((np.ones(len(ea)), (ea, eb)), shape=(total, total))
    _, merged = connected_components(g, directed=False)
    counts = np.concatenate([s["counts"] for s in summaries])
    first = np.concatenate([s["first"] for s in summaries])
    nm = int(merged.max()) + 1 if total else 0
    size = np.bincount(merged, weights=counts, minlength=nm).astype(np.int64)
    smallest = np.full(nm, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(smallest, merged, first)
    real = size > 0  # a label with no own node is someone's halo: merged into its owner's
    order = np.lexsort((smallest[real], -size[real]))  # as network_graph: largest first, then by first node
    rank = np.full(nm, -1, dtype=np.int64)
    rank[np.flatnonzero(real)[order]] = np.arange(int(real.sum()))
    glob = rank[merged]
    return [glob[offset[p]:offset[p + 1]] for p in range(len(summaries))], size[real][order]
