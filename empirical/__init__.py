"""samat.empirical: data, models, training and robustness evaluation with torch (built in later issues).

This package may import :mod:`theory` (for the Gaussian model as a dataset); never the reverse.
"""
