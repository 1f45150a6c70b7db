"""What a test sees does not depend on the tests that ran before it (tests/conftest.py; the suite runs in a random
order, pytest-randomly)."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import torch_seed_for


@pytest.mark.parametrize("leave", ["drawn from", "seeded"])
def test_torch_global_rng_starts_from_the_tests_own_seed(request, leave):
    """Each test starts at its own seed, then leaves the generator changed for whichever test comes next."""
    own = torch.rand(3, generator=torch.Generator().manual_seed(torch_seed_for(request.config, request.node.nodeid)))
    assert torch.equal(torch.rand(3), own)
    if leave == "seeded":
        torch.manual_seed(12345)
    else:
        torch.rand(100)
