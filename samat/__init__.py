"""samat: checks, by computation, what two papers claim about SAM and adversarial training.

The command line lives here; the work lives in :mod:`theory` (no torch) and :mod:`empirical`.
"""

__version__ = "0.1.0"
