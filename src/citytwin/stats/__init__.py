"""Statistics shared by the domain packages (pure functions over arrays, no I/O).

``autocorr``: global and local Moran's I and Getis-Ord G / G* (esda's statistics, our permutation
engine), used by ``economy`` (B4) and ``spatial`` (D1) alike, with one island convention.
``values``: checks of numeric inputs.
"""
