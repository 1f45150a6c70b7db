"""The duality map: the AT budget ε_AT(ρ) as robust as SAM with radius ρ, and the exponent of ε_AT ∝ ρ^b.

- :mod:`.curves`: the map from robust-accuracy curves, measured or exact (inversion, resampling, intervals, the
  exponent's fit and verdict);
- :mod:`.exact`: its exact answer on the Gaussian model, for both readings of SAM's objective.
"""
