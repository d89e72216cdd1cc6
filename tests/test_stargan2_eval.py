"""StarGAN v2's evaluation protocol on a tiny untrained network: tasks, counts, reference
streams, seeding, and the LPIPS aggregation."""

from __future__ import annotations

import copy
import dataclasses
import functools

import pytest
import torch

from mixgan.metrics.lpips_distance import load_lpips, lpips_pairs
from mixgan.nets.stargan2 import StarGANv2Config, build_nets, he_init
from mixgan.train.stargan2_eval import (
    BATCH_SIZE,
    NUM_OUTS,
    ReferenceStream,
    batch_mean,
    evaluate_translations,
    lpips_summary,
    pairwise_mean_distance,
    quantize,
    translation_batches,
)

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = StarGANv2Config(
    img_size=32, num_domains=3, latent_dim=4, style_dim=8, max_conv_dim=16, hidden_dim=16,
    base_dim=8,
)  # fmt: skip
#: the official order of tasks: targets in sorted order, then the other domains as sources
TASKS = ["dog2cat", "wild2cat", "cat2dog", "wild2dog", "cat2wild", "dog2wild"]


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    nets = build_nets(TINY, discriminator=False)
    for _, module in nets.items():
        module.apply(he_init).eval()
    return nets


def domains(sizes: dict[str, int], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.rand(n, 3, 32, 32, generator=g) * 2 - 1 for name, n in sizes.items()}


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A distance with one value per image pair: mean absolute difference."""
    return (a - b).abs().flatten(1).mean(1)


def test_protocol_constants() -> None:
    assert (NUM_OUTS, BATCH_SIZE) == (10, 32)  # main.py --num_outs_per_domain, --val_batch_size


@pytest.mark.parametrize("mode", ["latent", "reference"])
def test_tasks_counts_and_shapes(nets, mode: str) -> None:
    data = domains({"wild": 4, "cat": 5, "dog": 3})  # any name order: sorted inside
    results = list(evaluate_translations(nets, data, mode, seed=0, distance=l1, batch_size=2))
    assert [r.task for r in results] == TASKS
    names = sorted(data)
    for r in results:
        count = len(data[names[r.source]])
        assert r.task == f"{names[r.source]}2{names[r.target]}"
        assert r.images.shape == (count * NUM_OUTS, 3, 32, 32) and r.images.dtype == torch.uint8
        assert sorted(r.source_index.tolist()) == list(range(count))  # each source once
        assert r.batch_sizes == [2] * (count // 2) + [1] * (count % 2)
        assert r.lpips_per_source.shape == (count,) and r.lpips > 0
        assert r.lpips == pytest.approx(batch_mean(r.lpips_per_source, r.batch_sizes))
        if mode == "latent":
            assert r.reference_index is None
        else:
            assert r.reference_index.shape == (count, NUM_OUTS)
            assert r.reference_index.max() < len(data[names[r.target]])
    summary = lpips_summary(results, mode)
    assert list(summary) == [f"LPIPS_{mode}/{t}" for t in TASKS] + [f"LPIPS_{mode}/mean"]
    assert summary[f"LPIPS_{mode}/mean"] == pytest.approx(sum(r.lpips for r in results) / 6)


@pytest.mark.parametrize("mode", ["latent", "reference"])
def test_seeding(nets, mode: str) -> None:
    data = domains({"cat": 3, "dog": 4, "wild": 2})

    def run(seed: int) -> list[torch.Tensor]:
        return [r.images for r in evaluate_translations(nets, data, mode, seed, batch_size=2)]

    first, again, other = run(7), run(7), run(8)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_outputs_are_the_networks_translations(nets) -> None:
    """Each output is G(x_src, F(z, y_trg)) or G(x_src, E(x_ref, y_trg)) of its records, and
    the outputs of one source differ from each other."""
    data = domains({"cat": 3, "dog": 4})
    rng = torch.Generator().manual_seed(1)
    stream = ReferenceStream(4, 2, rng)
    batches = list(
        translation_batches(
            nets.generator, nets.mapping_network, nets.style_encoder, data["cat"], 1,
            "reference", rng, data["dog"], stream, num_outs=NUM_OUTS, batch_size=2,
        )
    )  # fmt: skip
    assert [len(b.source_index) for b in batches] == [2, 1]
    target = torch.tensor([1])
    with torch.no_grad():
        for batch in batches:
            for j in (0, NUM_OUTS - 1):
                for k, src in enumerate(batch.source_index.tolist()):
                    ref = batch.reference_index[j, k]
                    style = nets.style_encoder(data["dog"][ref][None], target)
                    expected = nets.generator(data["cat"][src][None], style)[0]
                    assert torch.allclose(batch.outputs[j, k], expected, atol=1e-5)
    latent = next(
        translation_batches(
            nets.generator, nets.mapping_network, nets.style_encoder, data["cat"], 1, "latent",
            torch.Generator().manual_seed(1), batch_size=2,
        )
    )  # fmt: skip
    assert latent.outputs.shape == (NUM_OUTS, 2, 3, 32, 32)
    for i in range(NUM_OUTS - 1):
        assert not torch.allclose(latent.outputs[i], latent.outputs[i + 1])


def test_reference_stream() -> None:
    stream = ReferenceStream(5, 2, torch.Generator().manual_seed(0))
    epochs = [torch.cat([stream.next() for _ in range(2)]) for _ in range(3)]
    for epoch in epochs:  # 2 full batches per permutation of 5 (the last partial one dropped)
        assert len(set(epoch.tolist())) == 4 and epoch.max() < 5
    assert len({tuple(e.tolist()) for e in epochs}) > 1  # reshuffled when exhausted
    with pytest.raises(ValueError, match="no full batch"):
        ReferenceStream(3, 4, torch.Generator())


def test_reference_stream_is_shared_by_a_targets_sources(nets) -> None:
    """For target "b", the sources "a" (1 batch x 3 outputs) and "c" (2 batches x 3) take 9
    consecutive batches of one stream over b's 4 images: every pair of consecutive batches
    from the start (one permutation) covers all 4, across the a2b/c2b boundary too."""
    data = domains({"a": 2, "b": 4, "c": 4})
    results = list(evaluate_translations(nets, data, "reference", 3, num_outs=3, batch_size=2))
    by_task = {r.task: r for r in results}
    drawn = []
    for task in ("a2b", "c2b"):
        r = by_task[task]
        refs = r.reference_index.reshape(-1, 2, 3)  # [batch, source in batch, output]
        drawn += [refs[b, :, j] for b in range(len(refs)) for j in range(3)]
    assert len(drawn) == 9
    for start in range(0, 8, 2):
        assert sorted(torch.cat(drawn[start : start + 2]).tolist()) == [0, 1, 2, 3]


def test_truncated_reference_batches(nets) -> None:
    """A last source batch of N < batch_size images takes the first N of a reference batch."""
    data = domains({"cat": 3, "dog": 4})
    rng = torch.Generator().manual_seed(2)
    stream = ReferenceStream(4, 2, rng)
    batches = list(
        translation_batches(
            nets.generator, nets.mapping_network, nets.style_encoder, data["cat"], 1,
            "reference", rng, data["dog"], stream, num_outs=2, batch_size=2,
        )
    )  # fmt: skip
    first, last = batches[0].reference_index, batches[-1].reference_index
    assert first.shape == (2, 2) and last.shape == (2, 1)
    # the first source batch took the two full batches of one permutation of the 4 references,
    # the last one the first image of each batch of the next permutation
    assert sorted(first.flatten().tolist()) == [0, 1, 2, 3]
    assert last[0, 0] != last[1, 0]


def test_lpips_of_identical_outputs_is_zero(nets) -> None:
    """With the style path switched off (AdaIN affines zeroed), the 10 outputs of a source are
    identical and their LPIPS (the project's LPIPS-AlexNet, untrained stand-in) is 0."""
    module, record = load_lpips("alex", None, allow_stand_in=True)
    assert record["stand_in"]
    distance = functools.partial(lpips_pairs, module)
    data = domains({"cat": 3, "dog": 2})
    results = list(evaluate_translations(nets, data, "latent", 0, distance, batch_size=2))
    assert all(r.lpips > 0 for r in results)
    generator = copy.deepcopy(nets.generator)
    with torch.no_grad():
        for block in generator.decoder:
            for norm in (block.norm1, block.norm2):
                norm.affine.weight.zero_()
                norm.affine.bias.zero_()
    styleless = dataclasses.replace(nets, generator=generator)
    for mode in ("latent", "reference"):
        results = list(evaluate_translations(styleless, data, mode, 0, distance, batch_size=2))
        for r in results:
            assert torch.equal(r.lpips_per_source, torch.zeros(len(r.source_index)))
            assert r.lpips == 0.0


def test_pairwise_mean_and_batch_weighting() -> None:
    """Hand-computed: source 0's outputs are constant 0, 1, 3 (pairs 1, 3, 2: mean 2), source
    1's all 1 (0); batches of sizes 2 and 1 weigh equally in the task value."""
    values = torch.tensor([[0.0, 1.0], [1.0, 1.0], [3.0, 1.0]])  # [num_outs, sources]
    outputs = values[:, :, None, None, None].expand(3, 2, 3, 4, 4)
    assert torch.allclose(pairwise_mean_distance(outputs, l1), torch.tensor([2.0, 0.0]))
    assert batch_mean(torch.tensor([2.0, 0.0, 4.0]), [2, 1]) == pytest.approx(2.5)  # not 2
    with pytest.raises(ValueError):
        batch_mean(torch.tensor([1.0, 2.0]), [1])
    with pytest.raises(ValueError):
        pairwise_mean_distance(outputs[:1], l1)


def test_quantize_as_official_png() -> None:
    """core/utils.py save_image: (x + 1) / 2 clamped to [0, 1], x 255 + 0.5, truncated."""
    x = torch.tensor([-1.5, -1.0, 0.0, 0.3, 1.0, 2.0]).reshape(1, 1, 2, 3)
    # 0.3 -> 0.65 * 255 + 0.5 = 166.25 -> 166
    assert quantize(x).flatten().tolist() == [0, 0, 128, 166, 255, 255]
