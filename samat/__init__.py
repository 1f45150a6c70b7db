"""samat: checks, by computation, what two papers claim about SAM and adversarial training.

One import name, in layers (each imports only those below it; docs/ARCHITECTURE.md):

    samat.cli             the ``samat`` command; nothing imports it
    samat.gaussian_study  theory meets training: linear models trained on the Gaussian model
    samat.empirical       the deep-learning experiments (torch)
    samat.theory          the Gaussian model, its exact optima and the papers' theorems (no torch)
    samat.core            errors, numbers, result files and locks that every layer shares
"""

from samat.core import VERSION as __version__

__all__ = ["__version__"]
