"""Checkpoints as people save them: a mismatch names the missing, unexpected and mis-shaped keys (#29)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ood_core.errors import OODLabError
from ood_core.inputs.weights import load_weights


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))


def test_a_mismatch_names_the_keys_that_do_not_fit(tmp_path):
    state = _net().state_dict()
    state["0.weight"] = torch.zeros(4, 2)  # mis-shaped
    del state["2.bias"]  # missing
    state["extra.weight"] = torch.zeros(1)  # unexpected
    torch.save(state, tmp_path / "ckpt.pt")
    with pytest.raises(OODLabError) as error:
        load_weights(_net(), tmp_path / "ckpt.pt", "mlp")
    message = str(error.value)
    assert "does not fit architecture 'mlp'" in message
    assert "shape mismatch (1): 0.weight (4, 2)≠(3, 2)" in message
    assert "missing (1): 2.bias" in message
    assert "unexpected (1): extra.weight" in message


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {"state_dict": s},
        lambda s: {"model": s},
        lambda s: {"net": s},
        lambda s: {f"module.{k}": v for k, v in s.items()},
    ],
    ids=["bare", "state_dict", "model", "net", "module-prefix"],
)
def test_the_usual_checkpoint_layouts_load_exactly(tmp_path, wrap):
    source = _net()
    torch.save(wrap(source.state_dict()), tmp_path / "ckpt.pt")
    target = _net()
    load_weights(target, tmp_path / "ckpt.pt", "mlp")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)
