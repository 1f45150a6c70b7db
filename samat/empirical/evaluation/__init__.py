"""Evaluation of trained models: scores clean and under the papers' threat models, with sanity checks.

One loop evaluates every task; a task adds its scorer:

- :mod:`.scorer`: what a task contributes (the :class:`~.scorer.Scorer` interface);
- :mod:`.evaluate`: the one evaluation loop (columns, sanity attacks, records, checks, extension);
- :mod:`.classification`: classification's scorer (per-example hits; accuracy);
- :mod:`.segmentation`: segmentation's scorer (per-image confusion matrices; mIoU);
- :mod:`.columns`: what a table column names (natural, average, an attack);
- :mod:`.checks`: the sanity checks, as data;
- :mod:`.trained`: weights located once with their configuration, loaded back, and the seeded evaluation subset;
- :mod:`.store`: eval.json;
- :mod:`.run`: ``samat eval`` (evaluate a run folder into its eval.json; the tasks' table);
- :mod:`.cost`: what an attack costs on this device (for the benchmark and the planner).

Every model is evaluated on the same seeded subset of its test set (``n_eval`` examples drawn with ``seed``),
batched, on the GPU when there is one.
"""
