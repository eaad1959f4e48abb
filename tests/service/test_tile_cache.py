"""The tile cache: least recently used tiles go first, within a count and a byte bound."""

from __future__ import annotations

from citytwin.service.tiles import TileMaker

#: a stand-in tile query of the same parameters (w, s, e, n, z, x, y): 100 bytes per tile
SQL = "SELECT repeat('x', 100)::BLOB FROM (SELECT $1, $2, $3, $4, $5, $6, $7)"


def test_lru_by_count_and_bytes() -> None:
    tm = TileMaker(capacity=3, max_bytes=10_000)
    keys = [("d", 1, (), 5, 0, i) for i in range(4)]
    for k in keys[:3]:
        assert len(tm.make(k, SQL, 5, 0, k[-1])) == 100
    assert tm.cached(keys[0]) is not None  # 0 is now the most recently used
    tm.make(keys[3], SQL, 5, 0, 3)          # evicts 1, the least recently used
    assert tm.cached(keys[1]) is None and tm.cached(keys[0]) is not None and tm.cached(keys[3]) is not None
    assert tm.bytes == 300 and tm.misses == 4
    small = TileMaker(capacity=100, max_bytes=250)
    for k in keys:
        small.make(k, SQL, 5, 0, k[-1])
    assert small.bytes == 200 and [k for k in keys if small.cached(k) is not None] == keys[2:]
    tm.close()
    small.close()
