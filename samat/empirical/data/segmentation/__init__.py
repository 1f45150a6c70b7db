"""Semantic segmentation data: images with one class per pixel (D Section 5.2).

- :mod:`.dataset`: :class:`~.dataset.SegmentationDataset` (uint8 images and masks on a common canvas, each
  image's own size, :data:`~.dataset.IGNORE_INDEX` where no class counts);
- :mod:`.augment`: random scale, crop and flip of images and masks together, on the device;
- :mod:`.files`: a dataset's files read from its folder or its official archive;
- :mod:`.scenes`: Fashion-MNIST scenes, the embedded default; :mod:`.stanford_background` (D Table 8) and
  :mod:`.voc` (PASCAL VOC 2012, D Table 9), supplied by the user with ``data_dir``.
"""

from samat.empirical.data.segmentation.augment import JointAugment
from samat.empirical.data.segmentation.dataset import IGNORE_INDEX, SegmentationDataset
from samat.empirical.data.segmentation.scenes import load_fashion_scenes
from samat.empirical.data.segmentation.stanford_background import load_stanford_background
from samat.empirical.data.segmentation.voc import load_voc2012

__all__ = ["IGNORE_INDEX", "JointAugment", "SegmentationDataset", "load_fashion_scenes", "load_stanford_background",
           "load_voc2012"]
