"""Attacks: the papers' threat models as data, and the attacks that realise them.

- :mod:`.specs`: :class:`~.specs.AttackSpec`, the registry of the papers' threat models, parsing of
  ``name@eps`` strings;
- :mod:`.pgd`: batched PGD, the inner maximisation of adversarial training (and the attack on vectors);
- :mod:`.stadv`: StAdv (Xiao et al. 2018);
- :mod:`.pixle`: Pixle (Pomponi et al. 2022) on whole batches;
- :mod:`.build`: a spec bound to a model, a seed and a device (torchattacks for the rest);
- :mod:`.meter`: perturbation sizes against the budget;
- :mod:`.crosscheck`: torchattacks' AutoAttack against the reference implementation.

Import the submodule you need: this package imports nothing itself, so that adversarial training (which needs
only :mod:`.pgd`) does not pay for importing torchattacks.
"""
