"""Theory meets training: linear classifiers trained on samples of D(p, η, n) by the same trainers that
train PRN-18, measured with theory's exact objectives, and compared with the population optima.

It sits above both :mod:`samat.theory` and :mod:`samat.empirical`, which never import it.

For each (p, η, n), seed and method (SGD, SAM(ρ), ASAM(ρ), PGD-AT ℓ∞ on the non-robust features as in
the papers, PGD-AT ℓ∞ on all features) one run is trained into ``<out>/runs`` (finished runs are
skipped, interrupted ones resumed). Each trained w gives:

* W_R = w1 / (w2 + ... + w_{n+1});
* its exact population clean accuracy and robust accuracy (non-robust and full ℓ∞ ball), from
  :func:`samat.theory.objectives.linear_log_risk`, not from a test sample;
* its robust accuracy on a test sample under the real attacks of :mod:`samat.empirical.attacks` (PGD without
  the [0, 1] box), next to the exact worst case on the same sample (margin - ε||w||_1), which a correct
  attack must reach, and next to the population value.

The seeds draw different training samples, so the intervals cover sampling and initialization.
A separate sweep trains ST and AT on growing samples to check that trained W_R converges to the
population optimum of the loss the trainer minimizes (logistic: see :mod:`samat.theory.lifted`).

Modules, in the order the work flows: :mod:`.grid` (what is trained), :mod:`.driver` (training),
:mod:`.measure`, :mod:`.summary` (with :mod:`.theory_curves` and :mod:`.statistics`), :mod:`.figures`,
:mod:`.verdicts` and :mod:`.report`. ``samat study --duality`` is apart: :mod:`.duality` trains ST and ladders of SAM
radii and AT budgets, measures them exactly and maps them (:mod:`samat.theory.duality.curves`) beside the exact answer;
:mod:`.duality_figure` draws and writes it.
"""
