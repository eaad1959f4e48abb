"""citytwin.spatial: urban spatial structure (D1-D6), pure functions over GeoDataFrames.

Modules: ``network`` (street graph, snapping, components, OSMnx-style statistics), ``lifecircle``
(D5), ``mix`` (D3), ``grid`` (H3), ``centers`` and ``polycentricity`` (D1), ``compare`` (D2/D4),
``jobs_housing`` (D6), ``report`` (HTML with maps). See docs/spatial.md.
"""
