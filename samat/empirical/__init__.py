"""empirical: the papers' deep-learning experiments with torch, in layers (each imports only those below it).

    experiments   grids of runs, their reports, tables and figures; the packaged experiment files
    evaluation    clean and robust accuracy with sanity checks (eval.json)
    training      configuration, optimizers, the steps of every method, the loop, DDP, run folders
    attacks       the papers' threat models: specs, PGD, StAdv, torchattacks, the AutoAttack cross-check
    inference     a model's predictions on stored examples
    models, data  the networks, and the datasets with device-side batching
    vocabulary    the typed vocabularies: methods, norms, datasets, architectures, augmentations

It may import :mod:`samat.theory` (the Gaussian model as a dataset) and :mod:`samat.core`; never
:mod:`samat.gaussian_study` or :mod:`samat.cli`. See docs/ARCHITECTURE.md.
"""
