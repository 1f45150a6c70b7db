"""The files TextAttack's recipes read, where they read them from, and one line saying which to place where when
some are missing (checked before an evaluation starts).

TextAttack downloads its resources on first use, which these machines cannot do; with the files in place its own
loading code reads them unchanged:

- IGA (IGAWang2019): the counter-fitted embeddings, ``word_embeddings/paragramcf/`` in TextAttack's cache (the
  folder TA_CACHE_DIR names, by default ~/.cache/textattack): paragram.npy, wordlist.pickle, nn.npy, mse_dist.p and
  cos_sim.p;
- PSO (PSOZang2020): the HowNet candidates, ``transformations/hownet/word_candidates_sense.pkl`` in the same cache,
  and flair's part-of-speech tagger ``upos-fast`` (flair/upos-english-fast from the Hugging Face hub, in flair's
  cache: the folder FLAIR_CACHE_ROOT names, by default ~/.flair, under models/upos-english-fast/), which
  TextAttack's HowNet swap asks for each word's part of speech;
- both: NLTK's English stopwords (corpora/stopwords/english in a folder of NLTK_DATA, by default ~/nltk_data), which
  the recipes' StopwordModification reads, and ``import textattack`` too.

On a machine without the hub, HF_HUB_OFFLINE=1 makes flair read its cached tagger without first trying the network
(which otherwise costs about 20 s of retries). :func:`use_resources` points all of these at one folder, as the
tests and ``samat demo --task text`` do with their stand-ins (:mod:`.standins`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from samat.core.errors import SamatError
from samat.empirical.attacks.specs import Algorithm

EMBEDDING = ("word_embeddings/paragramcf", ("paragram.npy", "wordlist.pickle", "nn.npy", "mse_dist.p", "cos_sim.p"))
HOWNET = ("transformations/hownet", ("word_candidates_sense.pkl",))
TAGGER_REPOSITORY = "flair/upos-english-fast"  # what flair's SequenceTagger.load("upos-fast") fetches
TAGGER_FOLDER = "models/upos-english-fast/models--flair--upos-english-fast"  # in flair's cache, hub-cache layout
TAGGER_FILE = "pytorch_model.bin"
STOPWORDS = "corpora/stopwords/english"
POST_INSTALL_MARKER = "post_install_check_3"  # TextAttack's note that its one-time NLTK download ran


def textattack_cache() -> Path:
    """TextAttack's cache folder: the one it already uses when it is imported, else TA_CACHE_DIR or its default."""
    module = sys.modules.get("textattack.shared.utils.install")
    if module is not None:
        return Path(module.TEXTATTACK_CACHE_DIR)
    return Path(os.environ.get("TA_CACHE_DIR") or os.path.expanduser("~/.cache/textattack"))


def flair_cache() -> Path:
    """flair's cache folder: flair.cache_root when flair is imported, else FLAIR_CACHE_ROOT or ~/.flair."""
    module = sys.modules.get("flair")
    if module is not None and hasattr(module, "cache_root"):
        return Path(module.cache_root)
    return Path(os.environ.get("FLAIR_CACHE_ROOT") or Path.home() / ".flair")


def nltk_folders() -> list[Path]:
    """Where NLTK looks for its data (nltk.data.path when NLTK is imported, else NLTK_DATA and ~/nltk_data)."""
    module = sys.modules.get("nltk.data")
    if module is not None:
        return [Path(p) for p in module.path]
    named = [Path(p) for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    return named + [Path.home() / "nltk_data", Path("/usr/share/nltk_data"), Path("/usr/local/share/nltk_data")]


def tagger_file(cache: Path | None = None) -> Path | None:
    """flair's cached part-of-speech tagger as the hub cache keeps it (refs/main naming a snapshot that holds the
    weights), or None."""
    folder = (cache or flair_cache()) / TAGGER_FOLDER
    try:
        revision = (folder / "refs" / "main").read_text().strip()
    except OSError:
        return None
    path = folder / "snapshots" / revision / TAGGER_FILE
    return path if path.is_file() else None


@dataclass(frozen=True)
class Missing:
    """A resource that is not where its library reads it: what it is, the files, the folder, how to fetch it."""

    what: str
    files: tuple[str, ...]
    folder: Path
    fetch: str

    def line(self) -> str:
        return f"{self.what}: place {', '.join(self.files)} in {self.folder}/ ({self.fetch})"


def missing_resources(algorithm: Algorithm, *, cache: Path | None = None, flair: Path | None = None,
                      nltk: list[Path] | None = None) -> list[Missing]:
    """What the recipe of ``algorithm`` (pso or iga) would try to download, because it is not in place: in TextAttack's
    cache, flair's and NLTK's folders (by default the ones the libraries use, see the module)."""
    out = []
    cache = cache or textattack_cache()
    flair = flair or flair_cache()
    nltk = nltk or nltk_folders()
    if not any((folder / STOPWORDS).is_file() for folder in nltk):
        first = nltk[0]
        out.append(Missing("NLTK's English stopwords", ("english",), first / "corpora" / "stopwords",
                           "NLTK_DATA names the folder; `python -m nltk.downloader stopwords` fetches it"))
    if algorithm is Algorithm.IGA:
        folder, files = EMBEDDING
        absent = tuple(f for f in files if not (cache / folder / f).is_file())
        if absent:
            out.append(Missing("TextAttack's counter-fitted embeddings (IGAWang2019)", absent, cache / folder,
                               "TA_CACHE_DIR names the cache; `python -c 'import textattack; textattack.shared."
                               "WordEmbedding.counterfitted_GLOVE_embedding()'` fetches them"))
    if algorithm is Algorithm.PSO:
        folder, files = HOWNET
        if not (cache / folder / files[0]).is_file():
            out.append(Missing("TextAttack's HowNet candidates (PSOZang2020)", files, cache / folder,
                               "TA_CACHE_DIR names the cache; `python -c 'import textattack; textattack."
                               "transformations.WordSwapHowNet()'` fetches them"))
        if tagger_file(flair) is None:
            out.append(Missing(f"flair's part-of-speech tagger {TAGGER_REPOSITORY} (PSOZang2020 tags each word)",
                               ("models--flair--upos-english-fast",), flair / "models" / "upos-english-fast",
                               "FLAIR_CACHE_ROOT names flair's cache; `python -c 'from flair.models import "
                               "SequenceTagger; SequenceTagger.load(\"upos-fast\")'` fetches it"))
    return out


def check_resources(algorithms: list[Algorithm]) -> None:
    """A one-line SamatError naming every missing file and its folder, before any attack starts."""
    missing = list(dict.fromkeys(m for a in algorithms for m in missing_resources(a)))
    if missing:
        raise SamatError("TextAttack's resources are missing (they cannot be downloaded here): "
                         + "; ".join(m.line() for m in missing))


def use_resources(folder: Path) -> None:
    """Point TextAttack, flair and NLTK at ``folder`` (its textattack/, flair/ and nltk_data/), and the hub libraries
    at their caches only (HF_HUB_OFFLINE): before any of them is imported, since each reads its folder then."""
    loaded = [name for name in ("textattack", "flair", "nltk", "huggingface_hub") if name in sys.modules]
    folder = Path(folder).resolve()
    wanted = {"TA_CACHE_DIR": folder / "textattack", "FLAIR_CACHE_ROOT": folder / "flair",
              "NLTK_DATA": folder / "nltk_data", "HF_HUB_OFFLINE": "1"}
    if loaded and any(os.environ.get(k) != str(v) for k, v in wanted.items()):
        raise SamatError(f"cannot point TextAttack at {folder}: {', '.join(loaded)} already loaded with other folders "
                         "(run it in a new process)")
    for key, value in wanted.items():
        os.environ[key] = str(value)
