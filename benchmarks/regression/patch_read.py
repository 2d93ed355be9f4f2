"""3D patches drawn by ``PatchSequence`` (foreground-biased, padded at the edges)."""

from __future__ import annotations

from . import _data


class PatchRead:
    """Read the patches of a seeded epoch, one per call."""

    params = [(32, 64, 64), (64, 128, 128)]
    param_names = ["patch_size"]

    def setup(self, patch_size: tuple[int, int, int]) -> None:
        from ctspine_zarr.sampling import PatchSequence

        self.sequence = PatchSequence(
            _data.store(), split=None, patch_size=patch_size, samples_per_epoch=64, seed=0
        )
        self.i = 0

    def time_patch_item(self, patch_size: tuple[int, int, int]) -> None:
        self.sequence[self.i % len(self.sequence)]
        self.i += 1
