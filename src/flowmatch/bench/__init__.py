"""Reproducible benchmarks (``flowmatch bench ...``): thin scripts over the library.

- :mod:`flowmatch.bench.paper2d` -- the 2D benchmark of Tong et al. (TMLR 2024, Table 2).
- :mod:`flowmatch.bench.published` -- the published numbers printed beside ours.
"""
