"""core: what every layer of samat shares, and nothing in it knows the papers.

* :mod:`samat.core.errors`: errors a user can act on, reported as one line;
* :mod:`samat.core.numbers`: numbers from user text ("8/255", "1.5/255") and integer checks;
* :mod:`samat.core.results`: the one way a result file is written (atomically, with its provenance).

It imports neither torch nor any other package of the project.
"""

from importlib import metadata

try:
    VERSION = metadata.version("samat")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    VERSION = "0.1.0+source"
