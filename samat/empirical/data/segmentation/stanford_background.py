"""The Stanford Background dataset (Gould et al. 2009; D Table 8): 715 outdoor scenes of about 320x240 pixels,
8 classes per pixel.

Layout (``iccv09Data.tar.gz``, or the folder it extracts to): ``images/<id>.jpg`` and ``labels/<id>.regions.txt``,
the latter one line per image row of whitespace-separated integers, the class of each pixel, -1 where unknown
(samat's :data:`~.dataset.IGNORE_INDEX`). The dataset has no official split; samat's is fixed: the ids sorted,
shuffled with seed 0, the first 80% for training (572 of 715 images) and the rest for testing.
"""

from __future__ import annotations

import numpy as np

from samat.core.errors import SamatError
from samat.empirical.data.dataset import LoadRequest
from samat.empirical.data.segmentation.dataset import (
    IGNORE_INDEX,
    SegmentationDataset,
    check_mask,
    from_splits,
    on_canvas,
)
from samat.empirical.data.segmentation.files import Files, decode_all, decode_image

STANFORD_CLASSES = ("sky", "tree", "road", "grass", "water", "building", "mountain", "foreground object")
STANFORD_ARCHIVE = "iccv09Data.tar.gz"
STANFORD_URL = "http://dags.stanford.edu/data/iccv09Data.tar.gz"
TRAIN_FRACTION = 0.8
SPLIT_SEED = 0
STANFORD_CROP = (240, 320)  # the default training crop: the usual image size
STANFORD_SCALE = (0.5, 2.0)


def stanford_split(ids: list[str]) -> tuple[list[str], list[str]]:
    """samat's fixed split of the sorted ids: a seed-0 shuffle, the first 80% for training."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(ids))
    cut = round(TRAIN_FRACTION * len(ids))
    shuffled = [sorted(ids)[i] for i in order]
    return sorted(shuffled[:cut]), sorted(shuffled[cut:])


def parse_regions(text: str, where: str) -> np.ndarray:
    """A ``.regions.txt`` file as an (H, W) int array; a one-line SamatError naming the file if it is ragged."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise SamatError(f"{where}: the rows hold different numbers of labels: replace the file")
    try:
        return np.array(rows, dtype=np.int64)
    except ValueError:
        raise SamatError(f"{where} holds something other than integer labels: replace the file") from None


def load_stanford_background(request: LoadRequest) -> SegmentationDataset:
    files = Files.find(request.data_dir, "images", ("", "iccv09Data"), (STANFORD_ARCHIVE,))
    if files is None:
        raise SamatError(f"Stanford Background not found in {request.data_dir}: put {STANFORD_ARCHIVE} "
                         f"({STANFORD_URL}) there, or the folder it extracts to (iccv09Data/images, iccv09Data/labels)")
    ids = [name.removeprefix("images/").removesuffix(".jpg") for name in files.listdir("images")
           if name.endswith(".jpg")]
    if not ids:
        raise SamatError(f"{files.where('images')} holds no .jpg images: extract {STANFORD_ARCHIVE} again")
    for i in ids:
        files.require(f"labels/{i}.regions.txt", f"the labels of images/{i}.jpg")
    names = [f"images/{i}.jpg" for i in ids] + [f"labels/{i}.regions.txt" for i in ids]
    blobs = files.read(names)
    images = decode_all(lambda name, data: decode_image(files.where(name), data),
                        {n: blobs[n] for n in names if n.endswith(".jpg")})
    masks = {}
    for i in ids:
        name = f"labels/{i}.regions.txt"
        regions = parse_regions(blobs[name].decode(), files.where(name))
        check_mask(regions, images[f"images/{i}.jpg"].shape[1:], len(STANFORD_CLASSES), files.where(name), extra=(-1,))
        masks[i] = np.where(regions < 0, IGNORE_INDEX, regions).astype(np.uint8)
    canvas = tuple(max(images[f"images/{i}.jpg"].shape[d] for i in ids) for d in (1, 2))
    train_ids, test_ids = stanford_split(ids)
    splits = {split: on_canvas([images[f"images/{i}.jpg"] for i in chosen], [masks[i] for i in chosen], canvas)
              for split, chosen in (("train", train_ids), ("test", test_ids))}
    return from_splits("stanford_background", splits, STANFORD_CLASSES, STANFORD_CROP, STANFORD_SCALE)

