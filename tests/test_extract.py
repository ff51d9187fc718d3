import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from ood_core.engine.extract import (
    ExtractionSettings,
    MemorySink,
    extract,
    model_device,
    on_device,
    pick_device,
)
from ood_core.inputs.datasets import ImageSet, array_image_set, folder_image_set
from ood_core.inputs.probes import find_probes, linear_head


def _tensor_set(x: torch.Tensor) -> ImageSet:
    return ImageSet(
        lambda row: x[row],
        np.arange(len(x)) % 3,
        [f"s{i}" for i in range(len(x))],
        transform=None,
    )


def _full_maps(model, names, x):
    maps = {}
    handles = [
        model.get_submodule(n).register_forward_hook(
            lambda m, i, o, n=n: maps.__setitem__(n, o.detach().clone())
        )
        for n in names
    ]
    with torch.no_grad():
        logits = model(x)
    for h in handles:
        h.remove()
    return maps, logits


@pytest.fixture(scope="module")
def tiny_resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return model


def test_resnet_probes_every_residual_block_in_order(tiny_resnet):
    probes = find_probes(tiny_resnet, torch.zeros(1, 3, 40, 40))
    assert probes.blocks == tuple(
        f"layer{i}.{j}" for i in range(1, 5) for j in range(2)
    )
    assert probes.head == "fc" and probes.kind == "residual blocks"


def test_stats_equal_brute_force_on_full_maps(tiny_resnet):
    x = torch.randn(7, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    probes = find_probes(tiny_resnet, x[:1])
    sink = MemorySink()
    report = extract(
        tiny_resnet,
        probes,
        _tensor_set(x),
        sink,
        ExtractionSettings(batch_size=3, device="cpu"),
    )
    maps, logits = _full_maps(tiny_resnet, [*probes.blocks, "avgpool"], x)
    for block in probes.blocks:
        a = torch.relu(maps[block]).numpy().astype(np.float64)
        for stat, brute in (
            ("max", lambda v: v.max()),
            ("mean", lambda v: v.mean()),
            ("l2", lambda v: np.sqrt((v**2).sum())),
        ):
            expected = np.array(
                [[brute(a[i, c]) for c in range(a.shape[1])] for i in range(len(x))]
            )
            np.testing.assert_allclose(
                sink.arrays[f"blocks/{block}/{stat}"], expected, rtol=1e-5, atol=1e-5
            )
    np.testing.assert_allclose(
        sink.arrays["logits"], logits.numpy(), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        sink.arrays["penultimate"],
        maps["avgpool"].flatten(1).numpy(),
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_array_equal(sink.arrays["index"], np.arange(7))
    np.testing.assert_array_equal(sink.arrays["labels"], np.arange(7) % 3)
    weight, bias = linear_head(tiny_resnet, probes)
    np.testing.assert_array_equal(sink.arrays["head/weight"], weight)
    np.testing.assert_allclose(
        sink.arrays["penultimate"] @ weight.T + bias,
        sink.arrays["logits"],
        rtol=1e-4,
        atol=1e-4,
    )
    assert report["skipped"] == 0 and report["device"] == "cpu"


def test_a_plain_sequential_is_probed_at_each_stage_and_before_its_pool():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 2),
    ).eval()
    probes = find_probes(model, torch.zeros(1, 1, 12, 12))
    assert (
        probes.blocks == ("1", "3")
        and probes.head == "6"
        and probes.kind == "each stage's output"
        and probes.pre_pool == "3"
    )
    x = torch.randn(5, 1, 12, 12)
    sink = MemorySink()
    extract(
        model,
        probes,
        _tensor_set(x),
        sink,
        ExtractionSettings(batch_size=2, device="cpu"),
    )
    maps, _ = _full_maps(model, ["3"], x)
    np.testing.assert_allclose(
        sink.arrays["blocks/3/max"], maps["3"].amax((2, 3)).numpy(), rtol=1e-6
    )


def test_unreadable_images_are_skipped_and_counted(tmp_path, tiny_resnet):
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(
            tmp_path / f"img{i}.png"
        )
    (tmp_path / "img2.png").write_bytes(b"not an image at all")
    images, identity = folder_image_set(tmp_path, labelled=False)
    transform = v2.Compose(
        [v2.Resize((32, 32)), v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    )
    sink = MemorySink()
    report = extract(
        tiny_resnet,
        find_probes(tiny_resnet, torch.zeros(1, 3, 32, 32)),
        images.with_transform(transform),
        sink,
        ExtractionSettings(batch_size=2, device="cpu"),
    )
    assert report["skipped"] == 1 and report["skipped_names"] == ["img2.png"]
    np.testing.assert_array_equal(sink.arrays["index"], [0, 1, 3, 4])
    assert sink.arrays["logits"].shape == (4, 3) and identity["n"] == 5


def test_grayscale_rgba_and_odd_sizes_go_through_one_transform():
    from ood_core.inputs.models import demo_spec

    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 255, shape, dtype=np.uint8)
        for shape in [(32, 32), (50, 17, 3), (9, 64, 4)]
    ]
    transform = demo_spec().transform()
    for image in images:
        assert transform(Image.fromarray(image)).shape == (1, 32, 32)


def test_order_is_deterministic_and_batch_size_independent(tiny_resnet):
    images = array_image_set(
        np.random.default_rng(2).integers(0, 255, (9, 24, 24, 3), dtype=np.uint8),
        np.zeros(9, np.int64),
        "r",
    )
    transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    probes = find_probes(tiny_resnet, torch.zeros(1, 3, 24, 24))
    runs = []
    for batch_size in (2, 9):
        sink = MemorySink()
        extract(
            tiny_resnet,
            probes,
            images.with_transform(transform),
            sink,
            ExtractionSettings(batch_size=batch_size, device="cpu"),
        )
        runs.append(sink.arrays)
    np.testing.assert_allclose(
        runs[0]["blocks/layer4.1/l2"],
        runs[1]["blocks/layer4.1/l2"],
        rtol=1e-5,
        atol=1e-5,
    )


def test_progress_reaches_total(tiny_resnet):
    calls = []
    extract(
        tiny_resnet,
        find_probes(tiny_resnet, torch.zeros(1, 3, 16, 16)),
        _tensor_set(torch.randn(5, 3, 16, 16)),
        MemorySink(),
        ExtractionSettings(batch_size=2, device="cpu"),
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_device_auto_selects_cuda_only_when_available():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu").type == "cpu"


def test_a_run_on_another_device_works_on_a_copy_and_leaves_the_shared_model(
    tiny_resnet,
):
    """Loaded models are shared by app sessions; a GPU extraction must not move them off the CPU.

    The "meta" device stands in for a GPU: the forward pass runs there, and copying its (data-less) results back
    fails, after which the shared model must still be on the CPU.
    """
    assert on_device(tiny_resnet, torch.device("cpu")) is tiny_resnet
    x = torch.rand(4, 3, 32, 32)
    probes = find_probes(tiny_resnet, x[:1])
    with pytest.raises(NotImplementedError, match="meta"):
        extract(
            tiny_resnet,
            probes,
            _tensor_set(x),
            MemorySink(),
            ExtractionSettings(device="meta"),
        )
    assert all(p.device.type == "cpu" for p in tiny_resnet.parameters())
    assert model_device(tiny_resnet).type == "cpu"
