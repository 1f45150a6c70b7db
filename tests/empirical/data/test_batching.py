"""BatchStream (samat.empirical.data.batching): epochs, order, generators, argument checks, batches on the GPU."""

from __future__ import annotations

import pytest
import torch

from samat.core.errors import ParameterError
from samat.empirical.data import (
    BatchStream,
    batching,
)
from tests.empirical.data.helpers import stream_data, uint8_images

# --------------------------------------------------------------------------------------------------
# BatchStream


def test_shuffled_epoch_covers_every_example_once():
    x, y = stream_data()
    stream = BatchStream(x, y, 10, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(stream) == 11
    seen = []
    for xb, yb in stream:
        assert xb.dtype == torch.float32 and yb.dtype == torch.int64 and xb.shape[1:] == (1, 8, 8)
        assert torch.equal(xb[:, 0, 0, 0] * 255, (yb % 256).float())  # images travel with their labels
        seen += yb.tolist()
    assert sorted(seen) == list(range(103)) and seen != list(range(103))
    assert [len(b) for _, b in stream][-1] == 3


def test_drop_last_and_order_without_shuffle():
    x, y = stream_data()
    stream = BatchStream(x, y, 10, shuffle=False, drop_last=True)
    batches = [yb for _, yb in stream]
    assert len(stream) == len(batches) == 10 and all(len(b) == 10 for b in batches)
    assert torch.equal(torch.cat(batches), torch.arange(100))
    assert len(BatchStream(x, y, 200, shuffle=True, drop_last=True)) == 0


def test_same_generator_state_gives_the_same_batches():
    x, y = stream_data()
    x = x.expand(-1, 3, -1, -1).contiguous()
    g = torch.Generator().manual_seed(0)
    first = list(BatchStream(x, y, 16, shuffle=True, augment="crop_flip", generator=g))
    state = g.get_state()  # resuming from a saved state reproduces the next epoch exactly
    second = list(BatchStream(x, y, 16, shuffle=True, augment="crop_flip", generator=g))
    g.set_state(state)
    again = list(BatchStream(x, y, 16, shuffle=True, augment="crop_flip", generator=g))
    fresh = list(BatchStream(x, y, 16, shuffle=True, augment="crop_flip", generator=torch.Generator().manual_seed(0)))
    for (a, ay), (b, by) in zip(second, again, strict=True):
        assert torch.equal(a, b) and torch.equal(ay, by)
    for (a, ay), (b, by) in zip(first, fresh, strict=True):
        assert torch.equal(a, b) and torch.equal(ay, by)
    assert not torch.equal(torch.cat([b for _, b in first]), torch.cat([b for _, b in second]))
    other = list(BatchStream(x, y, 16, shuffle=True, augment="crop_flip", generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(torch.cat([b for _, b in first]), torch.cat([b for _, b in other]))


def test_vectors_pass_through_as_float32():
    x = torch.randn(10, 5, dtype=torch.float64)
    batches = list(BatchStream(x, torch.zeros(10, dtype=torch.long), 4, shuffle=False))
    assert [b.shape for b, _ in batches] == [(4, 5), (4, 5), (2, 5)]
    assert batches[0][0].dtype == torch.float32 and torch.allclose(batches[0][0].double(), x[:4])


def test_stream_checks_its_arguments_once_not_per_batch(monkeypatch):
    x, y = stream_data()
    calls = []
    check = batching._check_augment
    monkeypatch.setattr(batching, "_check_augment", lambda *args: calls.append(args[1]) or check(*args))
    stream = BatchStream(x, y, 10, shuffle=True, augment="crop_flip", generator=torch.Generator().manual_seed(0))
    assert len(list(stream)) == 11 and calls == ["crop_flip"]


@pytest.mark.parametrize("batch_size", [0, -3])
def test_bad_batch_size_is_a_parameter_error(batch_size):
    with pytest.raises(ParameterError, match="batch_size"):
        BatchStream(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), batch_size, shuffle=False)


@pytest.mark.gpu
def test_batches_stay_on_the_gpu():
    ds = uint8_images().to("cuda")
    assert ds.train_x.is_cuda and ds.test_y.is_cuda and ds.train_x.dtype == torch.uint8
    with pytest.raises(ValueError, match="generator is on cpu"):  # checked once, when the stream is made
        BatchStream(ds.train_x, ds.train_y, 2, shuffle=False, augment="crop", generator=torch.Generator())
    x, y = stream_data()
    g = torch.Generator(device="cuda").manual_seed(0)
    x3 = x.expand(-1, 3, -1, -1).contiguous().cuda()
    for xb, yb in BatchStream(x3, y.cuda(), 16, shuffle=True, augment="crop_flip", generator=g):
        assert xb.is_cuda and yb.is_cuda and xb.dtype == torch.float32
