"""Device policy (bertlearn/device.py): what a device argument resolves to, and what it refuses."""

from __future__ import annotations

import pytest
import torch

from bertlearn import ModelError
from bertlearn.device import resolve_device, same_device


@pytest.mark.parametrize("bad", ["gpu", "cuda0", 3.5])
def test_an_unknown_device_is_refused_naming_it(bad):
    with pytest.raises(ModelError) as e:
        resolve_device(bad)
    assert str(e.value) == (f"device={bad!r} is not a device torch knows; pass \"cuda\" (or \"cuda:1\"), \"cpu\", "
                            "\"mps\", a torch.device, or None for the GPU where there is one")


def test_known_devices_resolve():
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))
    assert resolve_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("asked, here, same", [("cuda", "cuda:0", True), ("cuda", "cuda:3", True),
                                               ("cuda:0", "cuda:0", True), ("cuda:1", "cuda:0", False),
                                               ("cpu", "cuda:0", False), ("cuda", "cpu", False), ("cpu", "cpu", True)])
def test_a_device_without_an_index_is_any_of_its_kind(asked, here, same):
    # embed refused device="cuda" for a model on cuda:0 when the two were compared as torch.device objects
    assert same_device(torch.device(asked), torch.device(here)) is same
