"""The papers' Gaussian robust/non-robust model D(p, η, n), solved exactly, and every claim about it checked.

- :mod:`.model`: the data model and its classifier; :mod:`.backend`: float64 or mpmath arithmetic;
- :mod:`.objectives`: the exact population objectives of ST, AT and SAM (both readings of SAM's objective);
- :mod:`.closed_form`: the papers' closed forms; :mod:`.symbolic`: the sympy derivations and the derived forms;
- :mod:`.numeric`: numerical optima with their brackets; :mod:`.solve`: everything about one parameter point;
- :mod:`.lifted`: the papers' idealizations lifted (full-ball AT, SAM on all weights, the logistic loss);
- :mod:`.duality`: the AT budget as robust as SAM(ρ) (:mod:`.duality.curves`), and its exact values here
  (:mod:`.duality.exact`);
- :mod:`.claims`: Theorems 1-5 checked against the numerics, with verdicts, verification.json and verification.md;
- :mod:`.plots`: the figures against ε.

This package never imports torch.
"""
