"""An experiment's report, drawn from saved results only (nothing trains): the tables (:mod:`.tables`: table.md,
table.csv, table.json), the figures (:mod:`.plots`, with segmentation's examples in :mod:`.segmentation_figure`),
and a duality grid's map (:mod:`.duality`: its section of table.md, duality.json and its log-log figure).
"""
