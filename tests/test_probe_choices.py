"""Probes chosen in the registry (#29): ``probes = "all"``, an explicit list, and VGG's defaults."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ood_core.errors import OODLabError


def _resnet18():
    import torchvision

    return torchvision.models.resnet18(num_classes=10).eval()


def test_probes_all_reads_the_map_the_global_pool_reads_and_is_not_capped():
    """torchvision's ResNet block ends with ``out += identity; relu(out)`` in place, so its bn2, the block and the
    stage all output one tensor object: "all" must read (and mark as pre-pool) its final values."""
    from ood_core.inputs.probes import MAX_DEFAULT, find_probes
    from ood_core.inputs.taps import tapped

    model = _resnet18()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    every = find_probes(model, x[:1], "all")
    assert len(every.blocks) > MAX_DEFAULT  # no cap
    pooled, probed = [], []
    handle = model.avgpool.register_forward_pre_hook(
        lambda module, args: pooled.append(args[0].clone())
    )
    with torch.no_grad(), tapped(model, every, [every.pre_pool]) as taps:
        taps[every.pre_pool].register_forward_hook(
            lambda module, args, output: probed.append(output.clone())
        )
        model(x)
    handle.remove()
    torch.testing.assert_close(probed[0], pooled[0], rtol=0, atol=0)


def test_a_listed_probe_is_read_where_named_and_a_bad_name_is_one_error():
    from ood_core.inputs.probes import find_probes

    model, x = _resnet18(), torch.zeros(1, 3, 32, 32)
    listed = find_probes(model, x, ["layer2.1", "input:avgpool"])
    assert listed.blocks == ("layer2.1", "input:avgpool")
    assert listed.probe("input:avgpool").pre_pool  # the map the global pool reads
    assert not listed.probe("layer2.1").pre_pool
    with pytest.raises(OODLabError, match="has no module 'layer9'"):
        find_probes(model, x, ["layer9"])
    with pytest.raises(OODLabError, match="runs 2 times"):
        find_probes(model, x, ["layer1.0.relu"])  # a BasicBlock applies its ReLU twice


def test_vgg_is_probed_before_each_max_pool_and_before_the_global_pool():
    import torchvision

    from ood_core.inputs.probes import find_probes

    model = torchvision.models.vgg11(num_classes=10).eval()
    probes = find_probes(model, torch.zeros(1, 3, 32, 32))
    pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    # each max-pool reads ReLU(conv): the conv two layers up is the probe (its ReLU is where statistics are taken)
    assert probes.blocks == (*(f"features.{i - 2}" for i in pools), "avgpool")
    assert probes.pre_pool == "avgpool"
