"""Training: one loop for SGD, Adam, SAM, ASAM, ESAM and PGD adversarial training.

- :mod:`.config`: :class:`~.config.TrainConfig`, the run's configuration as data;
- :mod:`.optimizers`: the base optimizers and the SAM family's weight perturbation;
- :mod:`.steps`: what each method does with one batch;
- :mod:`.fast`: the fast step on CUDA (compiled, replayed as one CUDA graph; the partial batch eager);
- :mod:`.setup`: device, data, model and optimizer built from a configuration;
- :mod:`.loop`: the epochs, schedule, checkpoints and metrics (:func:`~.loop.train`);
- :mod:`.distributed`: data-parallel training under torchrun;
- :mod:`.runs`: the run folder on disk;
- :mod:`.throughput`: what a step costs on this device (for the benchmarks and the planner).
"""
