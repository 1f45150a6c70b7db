"""Generated movie reviews: a corpus of labelled sentences built from a small lexicon, for the tests and the CPU
default. It is not real data and stands for no result of the papers: it lets the text pipeline (tokenizer, model,
training, TextAttack's recipes) run end to end where Rotten Tomatoes cannot be downloaded.

The lexicon (:data:`GROUPS`) holds groups of synonyms, each with its part of speech (universal POS tags, as
TextAttack's HowNet swap reads them) and its sentiment. Within a group the first word is the common one: sentences
use it most of the time and its synonyms rarely, so that a model learns the common words well and their synonyms
less, and swapping a word for a synonym (what PSO and IGA do) can change its prediction, as on real reviews.

The last word of every group with more than two never appears in a sentence: only an attack brings it in, as an
attack on real reviews brings in synonyms the model rarely or never saw in training.

A sentence's label is its sentiment: positive (1) or negative (0), as Rotten Tomatoes numbers them. Most sentences
carry one sentiment throughout; "X but Y" sentences carry both and take Y's. The corpus is fixed: drawn from fixed
seeds, the same on every machine, whatever a run's seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samat.empirical.data.dataset import LoadRequest
from samat.empirical.data.text.dataset import SPLITS, TextCorpus


@dataclass(frozen=True)
class WordGroup:
    """Synonyms (the common word first), their universal POS tag and their sentiment (+1, -1 or 0)."""

    words: tuple[str, ...]
    pos: str
    polarity: int = 0


def _groups(pos: str, polarity: int, *groups: str) -> tuple[WordGroup, ...]:
    return tuple(WordGroup(tuple(g.split()), pos, polarity) for g in groups)


GROUPS: tuple[WordGroup, ...] = (
    *_groups("ADJ", +1, "good fine decent solid", "great superb terrific excellent",
             "wonderful marvelous delightful lovely", "funny hilarious witty amusing",
             "moving touching poignant stirring", "clever smart inventive ingenious",
             "beautiful gorgeous stunning elegant"),
    *_groups("ADJ", -1, "bad poor weak lame", "awful terrible dreadful horrible", "boring dull tedious tiresome",
             "silly stupid foolish inane", "messy sloppy clumsy careless", "ugly hideous unsightly grotesque",
             "predictable stale formulaic trite"),
    *_groups("NOUN", 0, "film movie picture feature", "story plot narrative tale", "acting performance cast ensemble",
             "script screenplay dialogue writing", "director filmmaker auteur", "ending finale conclusion",
             "music score soundtrack", "camerawork cinematography photography visuals"),
    *_groups("ADV", 0, "really truly genuinely thoroughly", "quite rather fairly somewhat"),
    *_groups("VERB", 0, "feels seems looks appears"),
)
# The words between the content words (NLTK's English stopwords hold them all): TextAttack's recipes never swap them.
FUNCTION_WORDS: dict[str, str] = {"the": "DET", "a": "DET", "this": "DET", "it": "PRON", "its": "PRON", "is": "AUX",
                                  "was": "AUX", "and": "CCONJ", "but": "CCONJ", "with": "ADP", "of": "ADP"}
LABEL_NAMES = ("negative", "positive")
SIZES = {"train": 2000, "validation": 200, "test": 200}  # sentences per split
SEEDS = {"train": 0, "validation": 1, "test": 2}
COMMON = 0.7  # how often a group's first word is drawn; its synonyms share the rest


def vocabulary() -> list[str]:
    """Every word a generated sentence can hold (content words, then function words)."""
    return [w for g in GROUPS for w in g.words] + list(FUNCTION_WORDS)


def part_of_speech() -> dict[str, str]:
    """Each word's universal POS tag."""
    return {w: g.pos for g in GROUPS for w in g.words} | FUNCTION_WORDS


def sentence_words(group: WordGroup) -> tuple[str, ...]:
    """The words of ``group`` that sentences use: all but the last of a group of more than two."""
    return group.words[:-1] if len(group.words) > 2 else group.words


def _by(pos: str, polarity: int) -> list[WordGroup]:
    return [g for g in GROUPS if g.pos == pos and g.polarity == polarity]


class _Writer:
    """Draws the sentences of one split from one seed."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def word(self, groups: list[WordGroup]) -> str:
        group = groups[self.rng.integers(len(groups))]
        used = sentence_words(group)
        if len(used) == 1 or self.rng.random() < COMMON:
            return used[0]
        return used[1 + self.rng.integers(len(used) - 1)]

    def adjective(self, polarity: int) -> str:
        return self.word(_by("ADJ", polarity))

    def noun(self) -> str:
        return self.word(_by("NOUN", 0))

    def adverb(self) -> str:
        return self.word(_by("ADV", 0))

    def sentence(self) -> tuple[str, int]:
        polarity = 1 if self.rng.random() < 0.5 else -1
        kind = self.rng.integers(5)
        if kind == 0:
            words = ["the", self.noun(), self.word(_by("VERB", 0)), self.adverb(), self.adjective(polarity)]
        elif kind == 1:
            words = ["the", self.noun(), "is", self.adjective(polarity), "and", "the", self.noun(), "is",
                     self.adjective(polarity)]
        elif kind == 2:
            words = ["a", self.adjective(polarity), self.noun(), "with", "a", self.adjective(polarity), self.noun()]
        elif kind == 3:  # the clause after "but" decides
            words = ["the", self.noun(), "is", self.adjective(-polarity), "but", "the", self.noun(), "is",
                     self.adverb(), self.adjective(polarity)]
        else:
            words = ["this", self.noun(), "was", self.adverb(), self.adjective(polarity), "and", "its", self.noun(),
                     "is", self.adjective(polarity)]
        return " ".join(words), int(polarity > 0)


def generate(sizes: dict[str, int] | None = None) -> TextCorpus:
    """The corpus: ``sizes`` sentences per split (default :data:`SIZES`), each split from its fixed seed."""
    sizes = sizes or SIZES
    texts, labels = {}, {}
    for split in SPLITS:
        writer = _Writer(SEEDS[split])
        pairs = [writer.sentence() for _ in range(sizes[split])]
        texts[split] = tuple(t for t, _ in pairs)
        labels[split] = np.array([y for _, y in pairs], dtype=np.int64)
    return TextCorpus("generated_reviews", texts, labels, LABEL_NAMES, "sentences generated from samat's lexicon "
                      "(empirical/data/text/generated.py), not real data")


def load_generated_reviews(request: LoadRequest) -> TextCorpus:
    """The generated corpus (it has no folder: ``data_dir`` is not read)."""
    return generate()
