"""Text classification data (D Section 5.3): labelled sentences in their own train / validation / test splits.

- :mod:`.dataset`: :class:`~.dataset.TextCorpus` (the sentences) and :class:`~.dataset.TextDataset` (their token
  ids, padded per batch);
- :mod:`.rotten_tomatoes`: Rotten Tomatoes (D Table 10), from the hub by name or from a folder;
- :mod:`.generated`: generated movie reviews from a small lexicon, the tests' and the CPU default's corpus (not
  real data).
"""

from samat.empirical.data.text.dataset import SPLITS, TextCorpus, TextDataset, check_labels
from samat.empirical.data.text.generated import load_generated_reviews
from samat.empirical.data.text.rotten_tomatoes import load_rotten_tomatoes

__all__ = ["SPLITS", "TextCorpus", "TextDataset", "check_labels", "load_generated_reviews", "load_rotten_tomatoes"]
