"""Stand-ins for TextAttack's downloaded resources, made from the generated corpus's lexicon
(:mod:`empirical.data.text.generated`), in the files and folders where TextAttack, flair and NLTK read the real ones
(:mod:`.resources`). They let both recipes run unchanged, with TextAttack's own loading code, on a machine that
cannot download anything: the tests and ``samat demo --task text`` use them. They are not the real resources and
give no result about Rotten Tomatoes.

- the counter-fitted embeddings (IGA): a :class:`textattack.shared.WordEmbedding` of the lexicon's words built from
  arrays, synonyms close together (squared distance about 0.1, within IGA's 0.5) and groups far apart, written as
  TextAttack's paragramcf files;
- the HowNet candidates (PSO): each content word's synonyms under its part of speech;
- flair's tagger (PSO): a flair SequenceTagger whose weights encode the lexicon's universal POS tags (one-hot word
  embeddings, an identity layer), saved as the hub cache keeps flair/upos-english-fast;
- NLTK's English stopwords: the lexicon's function words.
"""

from __future__ import annotations

import collections
import logging
import pickle
from pathlib import Path

import numpy as np
import torch

from samat.empirical.attacks.text.resources import (
    EMBEDDING,
    HOWNET,
    POST_INSTALL_MARKER,
    STOPWORDS,
    TAGGER_FILE,
    TAGGER_FOLDER,
)
from samat.empirical.data.text.generated import FUNCTION_WORDS, GROUPS, WordGroup, part_of_speech, vocabulary
from samat.empirical.libraries import text_library

DIMENSION = 16  # of the stand-in embedding
SPREAD = 0.08  # per-coordinate spread of synonyms around their group's centre: squared distances ~ 2 x 16 x 0.0064
REVISION = "0" * 40  # the snapshot name of the stand-in tagger in flair's hub-cache folder
TAGS = ("ADJ", "ADV", "NOUN", "VERB", "DET", "PRON", "AUX", "CCONJ", "ADP", "X")  # universal POS tags it predicts
HOWNET_POS = {"ADJ": "adj", "NOUN": "noun", "ADV": "adv", "VERB": "verb"}  # TextAttack's WordSwapHowNet.pos_dict


def embedding_arrays(groups: tuple[WordGroup, ...] = GROUPS, seed: int = 0) -> tuple[np.ndarray, dict[str, int]]:
    """The stand-in embedding: a (N, DIMENSION) float32 matrix of the lexicon's words and their indices."""
    rng = np.random.default_rng(seed)
    words = vocabulary()
    matrix = np.zeros((len(words), DIMENSION), dtype=np.float32)
    index = {w: i for i, w in enumerate(words)}
    for group in groups:
        centre = rng.normal(0.0, 2.0, DIMENSION)
        for w in group.words:
            matrix[index[w]] = centre + rng.normal(0.0, SPREAD, DIMENSION)
    for w in FUNCTION_WORDS:
        matrix[index[w]] = rng.normal(0.0, 2.0, DIMENSION)
    return matrix, index


def write_embedding(cache: Path) -> Path:
    """paragram.npy, wordlist.pickle, nn.npy (every word's neighbours by distance, itself first) and empty
    distance caches (mse_dist.p, cos_sim.p), in TextAttack's cache."""
    folder = cache / EMBEDDING[0]
    folder.mkdir(parents=True, exist_ok=True)
    matrix, index = embedding_arrays()
    distances = ((matrix[:, None, :] - matrix[None, :, :]) ** 2).sum(-1)
    np.save(folder / "paragram.npy", matrix)
    np.save(folder / "nn.npy", np.argsort(distances, axis=1, kind="stable"))
    with (folder / "wordlist.pickle").open("wb") as f:
        pickle.dump(index, f)
    for name in ("mse_dist.p", "cos_sim.p"):  # TextAttack fills these caches as a defaultdict(dict)
        with (folder / name).open("wb") as f:
            pickle.dump(collections.defaultdict(dict), f)
    return folder


def write_hownet(cache: Path) -> Path:
    """word_candidates_sense.pkl: word -> {part of speech: its synonyms}."""
    folder = cache / HOWNET[0]
    folder.mkdir(parents=True, exist_ok=True)
    table = {w: {HOWNET_POS[g.pos]: [s for s in g.words if s != w]} for g in GROUPS if g.pos in HOWNET_POS
             for w in g.words}
    with (folder / HOWNET[1][0]).open("wb") as f:
        pickle.dump(table, f)
    return folder / HOWNET[1][0]


def write_tagger(flair_cache: Path) -> Path:
    """A flair SequenceTagger that tags each word of the lexicon with its universal POS tag (X for others), saved
    where flair's SequenceTagger.load("upos-fast") finds flair/upos-english-fast in its cache."""
    text_library("transformers")  # flair imports transformers: through samat's guard (empirical.libraries)
    flair_data = text_library("flair.data")
    embeddings = text_library("flair.embeddings")
    models = text_library("flair.models")
    words = flair_data.Dictionary(add_unk=True)
    tags = part_of_speech()
    for w in tags:
        words.add_item(w)
    tag_dictionary = flair_data.Dictionary(add_unk=False)
    for t in TAGS:
        tag_dictionary.add_item(t)
    logger = logging.getLogger("flair")
    level = logger.level
    logger.setLevel(logging.WARNING)  # flair logs the one-hot vocabulary and the tagger's tags at INFO
    try:
        one_hot = embeddings.OneHotEmbeddings(words, embedding_length=len(TAGS))
        tagger = models.SequenceTagger(one_hot, tag_dictionary, "upos", use_rnn=False, use_crf=False,
                                       reproject_embeddings=False, dropout=0.0, word_dropout=0.0, locked_dropout=0.0)
    finally:
        logger.setLevel(level)
    weights = torch.zeros(len(words), len(TAGS))
    weights[:, TAGS.index("X")] = 1.0
    for w, t in tags.items():
        weights[words.get_idx_for_item(w)] = torch.nn.functional.one_hot(torch.tensor(TAGS.index(t)), len(TAGS))
    with torch.no_grad():
        one_hot.embedding_layer.weight.copy_(weights)
        tagger.linear.weight.copy_(10.0 * torch.eye(len(TAGS)))
        tagger.linear.bias.zero_()
    folder = flair_cache / TAGGER_FOLDER
    (folder / "snapshots" / REVISION).mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(REVISION)
    tagger.save(folder / "snapshots" / REVISION / TAGGER_FILE)
    return folder / "snapshots" / REVISION / TAGGER_FILE


def write_stopwords(nltk_data: Path) -> Path:
    path = nltk_data / STOPWORDS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(FUNCTION_WORDS) + "\n")
    return path


def write_standins(folder: Path) -> Path:
    """Every stand-in, in ``folder``'s textattack/, flair/ and nltk_data/ (what
    :func:`~.resources.use_resources` points the libraries at). TextAttack's note that its one-time NLTK download
    ran is written too: the NLTK data it would fetch is supplied here. Returns the folder."""
    folder = Path(folder)
    cache = folder / "textattack"
    write_stopwords(folder / "nltk_data")
    write_embedding(cache)
    write_hownet(cache)
    (cache / POST_INSTALL_MARKER).touch()
    write_tagger(folder / "flair")
    return folder
