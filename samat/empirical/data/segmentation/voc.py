"""PASCAL VOC 2012 segmentation (Everingham et al.; D Table 9): 1,464 training and 1,449 validation images of at
most 500x500 pixels, 21 classes (background and 20 objects) per pixel.

Layout (``VOCtrainval_11-May-2012.tar``, or the folder it extracts to, ``VOCdevkit/VOC2012``):
``ImageSets/Segmentation/train.txt`` and ``val.txt`` list the ids; ``JPEGImages/<id>.jpg`` is the image and
``SegmentationClass/<id>.png`` its mask, a palette PNG whose values are the class indices, 255 on object borders
and unlabelled pixels (:data:`~.dataset.IGNORE_INDEX`). The tables evaluate on the val list (D Table 9).
"""

from __future__ import annotations

from samat.core.errors import SamatError
from samat.empirical.data.dataset import LoadRequest
from samat.empirical.data.segmentation.dataset import SegmentationDataset, check_mask, from_splits, on_canvas
from samat.empirical.data.segmentation.files import Files, decode_all, decode_image

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "dining table", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train",
               "tv/monitor")
VOC_ARCHIVE = "VOCtrainval_11-May-2012.tar"
VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC_SPLITS = {"train": "train", "test": "val"}  # samat's split -> the list it reads
VOC_CROP = (513, 513)  # DeepLab's training crop (VainF/DeepLabV3Plus-Pytorch's default)
VOC_SCALE = (0.5, 2.0)


def _ids(files: Files, listing: str) -> list[str]:
    name = f"ImageSets/Segmentation/{listing}.txt"
    ids = [line.strip() for line in files.read_text(name, f"the {listing} list").splitlines() if line.strip()]
    if not ids:
        raise SamatError(f"{files.where(name)} lists no images: replace it with the official list")
    return ids


def load_voc2012(request: LoadRequest) -> SegmentationDataset:
    files = Files.find(request.data_dir, "JPEGImages", ("", "VOC2012", "VOCdevkit/VOC2012"), (VOC_ARCHIVE,))
    if files is None:
        raise SamatError(f"PASCAL VOC 2012 not found in {request.data_dir}: put {VOC_ARCHIVE} ({VOC_URL}) there, or "
                         "the folder it extracts to (VOCdevkit/VOC2012 with JPEGImages, SegmentationClass, ImageSets)")
    lists = {split: _ids(files, listing) for split, listing in VOC_SPLITS.items()}
    names = []
    for i in dict.fromkeys(lists["train"] + lists["test"]):
        for name, what in ((f"JPEGImages/{i}.jpg", "an image of the lists"),
                           (f"SegmentationClass/{i}.png", f"the mask of JPEGImages/{i}.jpg")):
            files.require(name, what)
            names.append(name)
    blobs = files.read(names)
    decoded = decode_all(lambda name, data: decode_image(files.where(name), data,
                                                         mode="RGB" if name.endswith(".jpg") else None), blobs)
    for i in dict.fromkeys(lists["train"] + lists["test"]):
        mask_name = f"SegmentationClass/{i}.png"
        check_mask(decoded[mask_name], decoded[f"JPEGImages/{i}.jpg"].shape[1:], len(VOC_CLASSES),
                   files.where(mask_name))
    everything = [decoded[f"JPEGImages/{i}.jpg"] for i in dict.fromkeys(lists["train"] + lists["test"])]
    canvas = tuple(max(image.shape[d] for image in everything) for d in (1, 2))
    splits = {split: on_canvas([decoded[f"JPEGImages/{i}.jpg"] for i in ids],
                               [decoded[f"SegmentationClass/{i}.png"] for i in ids], canvas)
              for split, ids in lists.items()}
    return from_splits("voc2012", splits, VOC_CLASSES, VOC_CROP, VOC_SCALE)
