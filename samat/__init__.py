"""samat: checks, by computation, what two papers claim about SAM and adversarial training.

The command line lives here, on top; nothing imports it. The work lives below: :mod:`gaussian_study`, then
:mod:`empirical` and :mod:`theory` (no torch), then :mod:`core`.
"""

from core import VERSION as __version__

__all__ = ["__version__"]
