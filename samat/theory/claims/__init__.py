"""The papers' claims about the Gaussian model (W Thm 1-5, D Thm 4.1-4.5), each checked against the numerical optima,
with a verdict computed from the numbers, and written for people.

- :mod:`.common`: the grid, the records of a check and of a claim, and the comparisons verdicts come from;
- :mod:`.fits`: limits ε -> 0 extrapolated from the numerics;
- :mod:`.optima`: T1 and T2, the closed-form optima of standard and adversarial training;
- :mod:`.theorem3`, :mod:`.theorem4`, :mod:`.theorem5`: SAM's claims, each under both readings of its objective;
- :mod:`.verify`: every check in turn (:func:`~.verify.run`);
- :mod:`.report`: verification.json and verification.md (:func:`~.report.verify_into` runs and writes both), and
  the verdicts in words.
"""

from samat.theory.claims.common import PER_SAMPLE, POPULATION, ClaimReport, Grid, SubCheck
from samat.theory.claims.verify import CHECKS, run

__all__ = ["CHECKS", "PER_SAMPLE", "POPULATION", "ClaimReport", "Grid", "SubCheck", "run"]
