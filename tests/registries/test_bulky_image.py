"""The benchmark image: N layers that do not compress, identical on every run."""

from __future__ import annotations

from registries.demo.images import bulky_image


def test_layers_are_incompressible_and_reproducible() -> None:
    image = bulky_image("bench", layers=3, layer_size=64 * 1024)
    assert len(image.layers) == 3
    assert len(set(image.layer_digests)) == 3
    # gzip cannot shrink SHAKE output, so each layer costs its full size on the wire.
    assert all(layer.size > 64 * 1024 for layer in image.layers)
    assert bulky_image("bench", layers=3, layer_size=64 * 1024).digest == image.digest
    assert bulky_image("other", layers=3, layer_size=64 * 1024).digest != image.digest
