"""Experiment grids: a TOML file of runs x seeds, trained and evaluated, then tabulated like the papers.

- :mod:`.grid`: the experiment file, read and validated (:func:`~.grid.load_experiment`);
- :mod:`.catalog`: the packaged experiment files (the papers' grids, the Fashion-MNIST default);
- :mod:`.runner`: train and evaluate what is unfinished;
- :mod:`.results`: the saved results gathered, mean and std over seeds;
- :mod:`.report`: what people read: table.md, table.csv, table.json (:mod:`.report.tables`), the figures
  (:mod:`.report.plots`), the duality map's table, figure and duality.json (:mod:`.report.duality`);
- :mod:`.plan`: the predicted device time of every run and of the grid (``samat experiment plan``);
- :mod:`.duality_grid`: the duality grid kind (ladders of SAM radii and AT budgets, and ST); :mod:`.duality`: its
  map from the runs' per-image hits (the computation is :mod:`samat.theory.duality.curves`).
"""
