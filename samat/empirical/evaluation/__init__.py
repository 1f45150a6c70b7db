"""Evaluation of trained models: clean and robust accuracy under the papers' threat models.

- :mod:`.columns`: what a table column names (natural, average, an attack);
- :mod:`.checks`: the sanity checks, as data;
- :mod:`.evaluate`: the evaluation itself, on given images;
- :mod:`.trained`: a run folder loaded back, and the seeded evaluation subset;
- :mod:`.store`: eval.json;
- :mod:`.run`: ``samat eval`` (evaluate a run folder into its eval.json);
- :mod:`.cost`: what an attack costs on this device (for the benchmark and the planner).

Every model is evaluated on the same seeded subset of its test set (``n_eval`` images drawn with ``seed``),
batched, on the GPU when there is one.
"""
