"""Segmentation data: Stanford Background and PASCAL VOC 2012 loaded from folders and archives that the tests write
in the official layouts, their one-line errors, the Fashion-MNIST scenes, the joint augmentation of images and
masks, and batches counted in iterations."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from samat.core.errors import SamatError
from samat.empirical.data import IGNORE_INDEX, BatchStream, JointAugment, SegmentationDataset, load_dataset
from samat.empirical.data.segmentation.scenes import ITEM_THRESHOLD, make_scenes
from samat.empirical.data.segmentation.stanford_background import STANFORD_CLASSES, stanford_split
from samat.empirical.data.segmentation.voc import VOC_CLASSES
from tests.empirical.helpers import run_cli

STANFORD_SIZES = [(12, 16), (10, 16), (12, 14), (12, 16), (11, 15)]  # (H, W): the real images vary in size too


def _jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image.transpose(1, 2, 0)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).transpose(2, 0, 1)


def stanford_files(seed: int = 0) -> dict[str, bytes]:
    """Stanford Background in its layout: images/<id>.jpg, labels/<id>.regions.txt (-1 = unknown)."""
    rng = np.random.default_rng(seed)
    files = {"horizons.txt": b""}
    for i, (h, w) in enumerate(STANFORD_SIZES):
        files[f"images/{i:07d}.jpg"] = _jpeg(rng.integers(0, 256, (3, h, w), dtype=np.uint8))
        regions = rng.integers(-1, len(STANFORD_CLASSES), (h, w))
        files[f"labels/{i:07d}.regions.txt"] = "\n".join(" ".join(map(str, row)) for row in regions).encode()
    return files


def voc_files(seed: int = 0, train=("2007_000032", "2007_000039"), val=("2007_000033", "2007_000042", "2007_000061"),
              palette: bool = True) -> dict[str, bytes]:
    """VOC 2012 in its layout: JPEGImages, SegmentationClass (palette PNGs, 255 on borders), ImageSets lists."""
    rng = np.random.default_rng(seed)
    files = {"ImageSets/Segmentation/train.txt": ("\n".join(train) + "\n").encode(),
             "ImageSets/Segmentation/val.txt": ("\n".join(val) + "\n").encode()}
    for k, i in enumerate((*train, *val)):
        h, w = (14, 18) if k % 2 else (18, 14)
        files[f"JPEGImages/{i}.jpg"] = _jpeg(rng.integers(0, 256, (3, h, w), dtype=np.uint8))
        mask = rng.integers(0, len(VOC_CLASSES), (h, w)).astype(np.uint8)
        mask[0] = 255  # an object border
        files[f"SegmentationClass/{i}.png"] = _png(mask, palette)
    return files


def _png(mask: np.ndarray, palette: bool = True) -> bytes:
    image = Image.fromarray(mask, mode="L")
    if palette:
        image = image.convert("P")
        image.putpalette([v for c in range(256) for v in (c, 255 - c, (7 * c) % 256)])
    else:
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_archive(path: Path, files: dict[str, bytes], prefix: str) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith(".gz") else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{prefix}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- Stanford Background --------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["folder", "archive"])
def test_stanford_background_loads_masks_sizes_and_the_fixed_split(tmp_path, layout):
    files = stanford_files()
    if layout == "folder":
        write_folder(tmp_path / "iccv09Data", files)
    else:
        write_archive(tmp_path / "iccv09Data.tar.gz", files, "iccv09Data")
    before = _tree(tmp_path)
    ds = load_dataset("stanford_background", tmp_path)
    assert _tree(tmp_path) == before  # nothing written beside the data
    assert isinstance(ds, SegmentationDataset) and ds.num_classes == 8 and ds.class_names == STANFORD_CLASSES
    ids = [f"{i:07d}" for i in range(len(STANFORD_SIZES))]
    train_ids, test_ids = stanford_split(ids)
    assert len(train_ids) == 4 and len(test_ids) == 1 and not set(train_ids) & set(test_ids)
    assert ds.canvas == (12, 16) and ds.train_x.shape == (4, 3, 12, 16) and ds.test_y.shape == (1, 12, 16)
    for split, chosen in (("train", train_ids), ("test", test_ids)):
        x, y, sizes = (getattr(ds, f"{split}_{p}") for p in ("x", "y", "sizes"))
        for row, i in enumerate(chosen):
            h, w = STANFORD_SIZES[int(i)]
            assert sizes[row].tolist() == [h, w]
            regions = np.array([r.split() for r in files[f"labels/{i}.regions.txt"].decode().splitlines()], int)
            expected = np.where(regions < 0, IGNORE_INDEX, regions)
            assert np.array_equal(y[row, :h, :w].numpy(), expected)
            assert (y[row, h:] == IGNORE_INDEX).all() and (y[row, :, w:] == IGNORE_INDEX).all()  # the canvas
            assert np.array_equal(x[row, :, :h, :w].numpy(), _decoded(files[f"images/{i}.jpg"]))
            assert (x[row, :, h:] == 0).all() and (x[row, :, :, w:] == 0).all()


@pytest.mark.parametrize(("damage", "needle"), [
    (lambda f: f.update({"labels/0000001.regions.txt": b"0 1\n2 3"}), "0000001.regions.txt: the mask is 2x2 pixels"),
    (lambda f: f.update({"labels/0000002.regions.txt": f["labels/0000002.regions.txt"].replace(b"3", b"9", 1)}),
     "0000002.regions.txt: class 9 is not one of 0..7"),
    (lambda f: f.pop("labels/0000003.regions.txt"), "0000003.regions.txt is missing"),
    (lambda f: f.update({"labels/0000004.regions.txt": b"0 1 2\n3 4"}), "0000004.regions.txt: the rows hold"),
])
def test_stanford_background_bad_files_are_one_line_errors_naming_the_file(tmp_path, damage, needle):
    files = stanford_files()
    damage(files)
    write_folder(tmp_path, files)
    with pytest.raises(SamatError, match=needle) as err:
        load_dataset("stanford_background", tmp_path)
    assert "\n" not in str(err.value)


# --- PASCAL VOC 2012 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["folder", "archive"])
def test_voc2012_loads_the_train_and_val_lists(tmp_path, layout):
    files = voc_files()
    if layout == "folder":
        write_folder(tmp_path / "VOCdevkit" / "VOC2012", files)
    else:
        write_archive(tmp_path / "VOCtrainval_11-May-2012.tar", files, "VOCdevkit/VOC2012")
    ds = load_dataset("voc2012", tmp_path)
    assert ds.num_classes == 21 and ds.canvas == (18, 18) and len(ds.train_y) == 2 and len(ds.test_y) == 3
    for row, i in enumerate(("2007_000033", "2007_000042", "2007_000061")):  # val.txt, in its order
        mask = np.asarray(Image.open(io.BytesIO(files[f"SegmentationClass/{i}.png"])))
        h, w = mask.shape
        assert ds.test_sizes[row].tolist() == [h, w]
        assert np.array_equal(ds.test_y[row, :h, :w].numpy(), mask)  # class indices, 255 kept as ignored
        assert np.array_equal(ds.test_x[row, :, :h, :w].numpy(), _decoded(files[f"JPEGImages/{i}.jpg"]))
    assert ds.mean == (0.485, 0.456, 0.406)  # ImageNet normalization, as the pretrained backbone expects


@pytest.mark.parametrize(("damage", "needle"), [
    (lambda f: f.pop("ImageSets/Segmentation/val.txt"), r"ImageSets/Segmentation/val.txt is missing \(the val list"),
    (lambda f: f.update({"SegmentationClass/2007_000042.png": _png(np.full((14, 18), 30, np.uint8))}),
     "2007_000042.png: class 30 is not one of 0..20"),
    (lambda f: f.update({"SegmentationClass/2007_000039.png": _png(np.zeros((9, 9), np.uint8))}),
     "2007_000039.png: the mask is 9x9 pixels but its image 18x14"),
    (lambda f: f.update({"SegmentationClass/2007_000032.png": _png(np.zeros((18, 14), np.uint8), palette=False)}),
     "2007_000032.png is a RGB image, not a palette"),
    (lambda f: f.pop("JPEGImages/2007_000061.jpg"), "JPEGImages/2007_000061.jpg is missing"),
])
def test_voc2012_bad_files_are_one_line_errors_naming_the_file(tmp_path, damage, needle):
    files = voc_files()
    damage(files)
    write_folder(tmp_path, files)
    with pytest.raises(SamatError, match=needle) as err:
        load_dataset("voc2012", tmp_path)
    assert "\n" not in str(err.value)


def test_missing_dataset_and_corrupt_archive_are_one_line_errors(tmp_path):
    with pytest.raises(SamatError, match="VOCtrainval_11-May-2012.tar"):
        load_dataset("voc2012", tmp_path)
    (tmp_path / "iccv09Data.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(SamatError, match="iccv09Data.tar.gz is not a readable tar archive"):
        load_dataset("stanford_background", tmp_path)


def test_train_cli_with_a_broken_dataset_is_one_line_and_leaves_no_run(tmp_path):
    files = voc_files()
    files.pop("ImageSets/Segmentation/train.txt")
    write_folder(tmp_path / "voc", files)
    out = run_cli("train", "--dataset", "voc2012", "--model", "deeplabv3_small", "--data-dir", str(tmp_path / "voc"),
                  "--runs-dir", str(tmp_path / "runs"), "--no-progress")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].endswith("the dataset is incomplete, extract it again")
    runs = tmp_path / "runs"  # checked writable before the work; it holds no run (lock files are hidden)
    assert "train.txt is missing" in out.stderr
    assert not runs.exists() or not [p for p in runs.iterdir() if not p.name.startswith(".")]


# --- Fashion-MNIST scenes -------------------------------------------------------------------------------------

def test_scenes_hold_one_to_four_items_labelled_where_they_are_drawn():
    rng = np.random.default_rng(5)
    items = rng.integers(0, 256, (50, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 50)
    x, y = make_scenes(items, labels, 40, seed=3)
    again = make_scenes(items, labels, 40, seed=3)
    assert np.array_equal(x, again[0]) and np.array_equal(y, again[1])  # deterministic in the seed
    assert not np.array_equal(y, make_scenes(items, labels, 40, seed=4)[1])
    assert x.shape == (40, 1, 64, 64) and y.shape == (40, 64, 64) and y.max() <= 10
    drawn = y > 0
    assert (x[:, 0][drawn] > ITEM_THRESHOLD).all() and (x[:, 0][~drawn] == 0).all()
    classes_per_scene = [len(np.unique(m[m > 0])) for m in y]
    assert 1 <= min(classes_per_scene) and max(classes_per_scene) <= 4


# --- Joint augmentation and batches ---------------------------------------------------------------------------

def _pairs(n=6, h=10, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g), torch.randint(0, 5, (n, h, w), generator=g)


def test_joint_augment_identity_and_flip_are_exact():
    x, y = _pairs()
    g = torch.Generator().manual_seed(0)
    same_x, same_y = JointAugment((10, 12), (1.0, 1.0), flip=False)(x, y, g)
    assert torch.equal(same_y, y) and torch.allclose(same_x, x, atol=1e-6, rtol=0)  # bilinear at the pixel centres
    out_x, out_y = JointAugment((10, 12), (1.0, 1.0))(x, y, torch.Generator().manual_seed(1))
    flipped = torch.tensor([not torch.equal(out_y[i], y[i]) for i in range(len(y))])
    assert flipped.any() and (~flipped).any()
    assert torch.equal(out_y[flipped], y[flipped].flip(-1))
    assert torch.allclose(out_x[flipped], x[flipped].flip(-1), atol=1e-6, rtol=0)


def test_joint_augment_keeps_the_classes_and_pads_with_the_ignore_label():
    x, y = _pairs(n=16)
    g = torch.Generator().manual_seed(2)
    out_x, out_y = JointAugment((10, 12), (0.5, 0.5))(x, y, g)  # half size: the image covers a quarter
    assert set(out_y.unique().tolist()) <= set(y.unique().tolist()) | {IGNORE_INDEX}
    outside = out_y == IGNORE_INDEX
    assert outside.float().mean() == pytest.approx(0.75, abs=0.1)
    # black padding (bilinear sampling blends the image's border pixels into the padding's first pixel)
    inner = outside & ~F.max_pool2d((~outside).float()[:, None], 3, 1, 1)[:, 0].bool()
    assert inner.any() and (out_x.permute(1, 0, 2, 3)[:, inner] == 0).all()
    big_x, big_y = JointAugment((10, 12), (2.0, 2.0))(x, y, g)
    assert not (big_y == IGNORE_INDEX).any()  # twice the size: the window always lies inside the image
    repeat = JointAugment((10, 12), (0.5, 2.0))
    a = repeat(x, y, torch.Generator().manual_seed(7))
    b = repeat(x, y, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_joint_augment_places_the_window_on_each_image_not_on_the_canvas():
    x, y = _pairs(n=4, h=10, w=12)
    x[:, :, 6:] = 0
    y[:, 6:] = IGNORE_INDEX
    sizes = torch.tensor([[6, 12]] * 4)
    out_x, out_y = JointAugment((6, 12), (1.0, 1.0), flip=False, sizes=sizes)(x, y, None, torch.arange(4))
    assert torch.equal(out_y, y[:, :6])  # a crop of the image's own size is the image, wherever the canvas ends


def test_batches_counted_in_iterations_are_full_and_reshuffle_when_the_data_runs_out():
    x, y = torch.arange(10).float()[:, None], torch.arange(10)
    stream = BatchStream(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(0), steps=5)
    batches = [b for _, b in stream]
    assert len(stream) == 5 and len(batches) == 5 and all(len(b) == 4 for b in batches)
    assert len(set(torch.cat(batches[:2]).tolist())) == 8  # no repeats within a pass (two full batches of ten)
    with pytest.raises(SamatError, match="batch_size"):
        BatchStream(x, y, 11, shuffle=True, steps=3)


def test_segmentation_subsets_are_seeded_and_keep_sizes_with_their_images():
    x, y = (torch.randint(0, 255, (8, 1, 4, 5), dtype=torch.uint8), torch.randint(0, 3, (8, 4, 5), dtype=torch.uint8))
    sizes = torch.tensor([[4, 5], [3, 5], [4, 4], [2, 2], [4, 5], [1, 5], [4, 1], [3, 3]])
    ds = SegmentationDataset("t", x, y, x[:3], y[:3], 3, (0.5,), (0.2,), "none", class_names=("a", "b", "c"),
                             train_sizes=sizes)
    sub = ds.subset(4, None, seed=1)
    assert torch.equal(sub.train_x, ds.subset(4, None, seed=1).train_x) and len(sub.train_y) == 4
    rows = [next(i for i in range(8) if torch.equal(x[i], sub.train_x[j])) for j in range(4)]
    assert torch.equal(sub.train_sizes, sizes[rows]) and torch.equal(sub.train_y, y[rows])
    with pytest.raises(SamatError, match="train_subset"):
        ds.subset(9, None, seed=0)
