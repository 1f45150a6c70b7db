"""Word-substitution attacks on text classifiers (D Section 5.3, Table 10): TextAttack's recipes PSOZang2020 and
IGAWang2019 as TextAttack defines them.

- :mod:`.recipes`: the recipes built on a samat text classifier, one sentence at a time, seeded; TextAttack's
  metrics (success rate, accuracy under attack, queries, words changed) from the outcomes;
- :mod:`.resources`: the files the recipes read (TextAttack's cache, flair's tagger, NLTK's stopwords), checked
  before an evaluation with a one-line error naming what to place where;
- :mod:`.standins`: stand-ins for those files made from the generated corpus's lexicon (tests, CPU default).

Importing this package imports neither TextAttack nor transformers: using it does.
"""
