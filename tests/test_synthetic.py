"""Tests of the synthetic CTSpine1K-like raw-tree generator."""

from __future__ import annotations

import gzip
import pathlib
import re

import nibabel as nib
import numpy as np
import pytest

from ctspine_zarr.schema import SOURCES, SPLIT_SECTIONS
from ctspine_zarr.testing import synthetic
from ctspine_zarr.vertebrae import VERTEBRA_NAMES

SHAPE = (64, 64)
N_SLICES = (20, 40)

ID_PATTERNS = {
    "COLONOG": re.compile(r"^(1\.3\.6\.1\.4\.1\.9328\.50\.4\.\d{4}|CTC-\d+)$"),
    "HNSCC-3DCT-RT": re.compile(r"^HN_P\d{3}$"),
    "MSD-T10": re.compile(r"^liver_\d+$"),
    "COVID-19": re.compile(r"^volume-covid19-A-\d{4}(_\d)?_ct$"),
}
RANK = {label: i for i, label in enumerate(synthetic.SPINE_ORDER)}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, list]:
    root = tmp_path_factory.mktemp("raw")
    cases = synthetic.make_raw_tree(root, n_cases=6, shape=SHAPE, n_slices=N_SLICES, seed=3)
    return root, cases


@pytest.fixture(scope="module")
def canonical(tree: tuple[pathlib.Path, list]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Case id -> (HU float, label int) in closest-canonical (RAS) voxel order."""
    out = {}
    for case in tree[1]:
        image = nib.as_closest_canonical(nib.load(case.image_path))
        label = nib.as_closest_canonical(nib.load(case.label_path))
        out[case.case_id] = (
            np.asanyarray(image.dataobj).astype(np.float64),
            np.rint(np.asanyarray(label.dataobj)).astype(np.int64),
        )
    return out


def _read_split(path: pathlib.Path) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in path.read_bytes().decode().split("\r\n"):
        if not line.strip():
            continue
        if line.endswith(":"):
            current = line[:-1]
            sections[current] = []
        else:
            assert current is not None
            sections[current].append(line)
    return sections


def _z_runs(label: np.ndarray) -> dict[int, np.ndarray]:
    """Label value -> sorted z indices (last axis) of the slices holding it."""
    present = [int(v) for v in np.unique(label) if v]
    return {v: np.nonzero((label == v).any(axis=(0, 1)))[0] for v in present}


# --- layout and split file ---------------------------------------------------------------------


def test_layout_and_file_names(tree):
    root, cases = tree
    assert [c.source for c in cases] == [SOURCES[i % len(SOURCES)] for i in range(6)]
    assert re.match(r"^1\.3\.6\.1\.4\.1\.9328\.50\.4\.\d{4}$", cases[0].case_id)
    assert len({c.case_id for c in cases}) == len(cases)
    for case in cases:
        assert ID_PATTERNS[case.source].match(case.case_id), case.case_id
        assert (
            case.image_path == root / "rawdata" / "volumes" / case.source / f"{case.case_id}.nii.gz"
        )
        assert (
            case.label_path
            == root / "rawdata" / "labels" / case.source / f"{case.case_id}_seg.nii.gz"
        )
        assert case.image_path.is_file()
        assert case.label_path.is_file()
        with gzip.open(case.image_path) as fh:
            assert len(fh.read(352)) == 352
    written = sorted(p.relative_to(root) for p in (root / "rawdata").rglob("*") if p.is_file())
    expected = sorted(p.relative_to(root) for c in cases for p in (c.image_path, c.label_path))
    assert written == expected


def test_split_file(tree):
    root, cases = tree
    path = root / "metadata" / "data_split.txt"
    raw = path.read_bytes()
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    sections = _read_split(path)
    assert list(sections) == list(SPLIT_SECTIONS)
    listed = {name: sec for sec, names in sections.items() for name in names}
    files = {c.image_path.name: c for c in cases}
    for name, case in files.items():
        assert listed.get(name, "") == case.split
    assert sum(c.split == "" for c in cases) == 1
    n_train = sum(c.split == "trainset" for c in cases)
    assert n_train >= len(cases) / 2
    assert n_train == max(len(v) for v in sections.values()) - 1
    assert {c.split for c in cases} == {"trainset", "test_public", "test_private", ""}
    dangling = set(listed) - set(files)
    assert len(dangling) == 1
    assert next(iter(dangling)).endswith(".nii.gz")


def test_no_split_file_and_single_case(tmp_path):
    cases = synthetic.make_raw_tree(
        tmp_path, n_cases=1, shape=(32, 32), n_slices=(8, 8), split_file=False, gz=False
    )
    assert len(cases) == 1
    assert cases[0].source == "COLONOG"
    assert "." in cases[0].case_id
    assert cases[0].image_path.name == f"{cases[0].case_id}.nii"
    assert cases[0].label_path.name == f"{cases[0].case_id}_seg.nii"
    assert not (tmp_path / "metadata").exists()
    assert nib.load(cases[0].image_path).shape[2] == 8


def test_write_split_file(tmp_path):
    path = synthetic.write_split_file(
        tmp_path / "m" / "split.txt", {"trainset": ["a.nii.gz", "b.nii.gz"], "test_public": []}
    )
    assert path.read_bytes() == b"trainset:\r\na.nii.gz\r\nb.nii.gz\r\n\r\ntest_public:\r\n"


# --- geometry and headers ------------------------------------------------------------------------


def test_label_geometry_matches_image(tree):
    for case in tree[1]:
        image, label = nib.load(case.image_path), nib.load(case.label_path)
        assert image.shape == label.shape
        np.testing.assert_array_equal(image.affine, label.affine)
        assert image.header["qform_code"] == label.header["qform_code"]
        assert image.header["sform_code"] == label.header["sform_code"]


def test_header_quirks_cover_all_variants(tree):
    cases = {c.variant: c for c in tree[1]}
    assert set(cases) == set(synthetic.VARIANTS)
    for case in cases.values():
        image = nib.load(case.image_path)
        assert image.header.get_xyzt_units()[0] == "mm"
        assert image.header["descrip"].item()
        zooms = sorted(image.header.get_zooms())
        assert 0.6 <= zooms[0] <= zooms[1] <= 0.9
        assert 1.0 <= zooms[2] <= 5.0

    image = nib.load(cases["lps-uint16-inter"].image_path)
    assert image.get_data_dtype() == np.uint16
    assert (image.dataobj.slope, image.dataobj.inter) == (1.0, -1024.0)
    assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
    hu = np.asanyarray(image.dataobj)
    assert hu.min() >= -1024
    assert hu.max() <= 3071
    assert np.all(hu == np.rint(hu))

    image = nib.load(cases["ras-int16"].image_path)
    assert image.get_data_dtype() == np.int16
    assert (image.dataobj.slope, image.dataobj.inter) == (1.0, 0.0)
    assert nib.aff2axcodes(image.affine) == ("R", "A", "S")

    label = nib.load(cases["float-label"].label_path)
    assert label.get_data_dtype() == np.float32
    values = np.asanyarray(label.dataobj)
    assert np.all(values == np.rint(values))
    assert values.max() > 0
    image = nib.load(cases["float-label"].image_path)
    assert image.header["sform_code"] > 0
    assert image.header["qform_code"] == 0

    image = nib.load(cases["qform-only"].image_path)
    assert image.header["qform_code"] > 0
    assert image.header["sform_code"] == 0
    assert np.linalg.det(image.affine[:3, :3]) < 0

    image = nib.load(cases["descending-z"].image_path)
    assert image.affine[2, 2] < 0
    assert nib.aff2axcodes(image.affine)[2] == "I"

    image = nib.load(cases["sagittal"].image_path)
    assert nib.aff2axcodes(image.affine) == ("P", "I", "L")

    for case in cases.values():
        if case.variant != "float-label":
            assert nib.load(case.label_path).get_data_dtype() == np.uint8


# --- content -------------------------------------------------------------------------------------


def test_spine_is_superior_at_high_z_in_canonical_order(tree, canonical):
    for case in tree[1]:
        _, label = canonical[case.case_id]
        runs = _z_runs(label)
        assert runs, case
        assert set(runs) <= set(VERTEBRA_NAMES)
        for value, zs in runs.items():
            assert zs[-1] - zs[0] + 1 == len(zs), (case.variant, value)  # one contiguous run
        by_height = sorted(runs, key=lambda v: -runs[v].mean())
        assert by_height == sorted(runs, key=RANK.__getitem__), case.variant


def test_spine_variations_present(tree, canonical):
    labels = set().union(*(set(np.unique(lab)) for _, lab in canonical.values()))
    assert {25, 26, 28} <= labels  # L6, sacrum, T13


def test_labels_lie_on_bone(canonical):
    for hu, label in canonical.values():
        assert np.median(hu[label > 0]) > 150
        for value in np.unique(label[label > 0]):
            assert np.median(hu[label == value]) > 150


def test_air_outside_body(canonical):
    for hu, _ in canonical.values():
        corners = np.concatenate([hu[:6, -6:].ravel(), hu[-6:, -6:].ravel()])  # anterior corners
        assert corners.min() >= -1024
        assert -1024 <= np.median(corners) <= -990


def _noise_estimate(hu: np.ndarray, label: np.ndarray) -> float:
    """Robust noise std from differences of x-neighbours that both lie in soft tissue.

    The MAD of neighbour differences ignores the few pairs straddling an edge; at the small
    sizes used here the noise is nearly white, so ``std(a - b) = sqrt(2) * sigma``.
    """
    h = hu.astype(np.float64)
    a, b = h[..., :-1], h[..., 1:]
    soft = (np.abs(a - 40) < 200) & (np.abs(b - 40) < 200)
    soft &= (label[..., :-1] == 0) & (label[..., 1:] == 0)
    d = (a - b)[soft]
    assert d.size > 1000
    mad = np.median(np.abs(d - np.median(d)))
    return float(1.4826 * mad / np.sqrt(2.0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_in_soft_tissue(seed):
    hu, label = synthetic.make_volume(
        shape_zyx=(12, 96, 96), spacing_zyx=(2.0, 0.7, 0.7), seed=seed
    )
    assert 5 <= _noise_estimate(hu, label) <= 40


def test_noise_level_follows_noise_hu():
    hu, label = synthetic.make_volume(
        shape_zyx=(12, 96, 96), spacing_zyx=(2.0, 0.7, 0.7), seed=4, noise_hu=15.0
    )
    assert 10 <= _noise_estimate(hu, label) <= 20


def test_make_volume_places_requested_vertebrae():
    hu, label = synthetic.make_volume(
        shape_zyx=(40, 64, 64), spacing_zyx=(3.0, 0.8, 0.8), seed=7, vertebrae=range(20, 25)
    )
    assert hu.dtype == np.int16
    assert label.dtype == np.uint8
    assert hu.shape == label.shape == (40, 64, 64)
    assert hu.min() >= -1024
    assert hu.max() <= 3071
    assert set(np.unique(label)) == {0, 20, 21, 22, 23, 24}
    runs = _z_runs(label.transpose(2, 1, 0))
    assert sorted(runs, key=lambda v: -runs[v].mean()) == [20, 21, 22, 23, 24]
    assert sum(len(zs) for zs in runs.values()) == 40  # every slice shows the spine


def test_make_volume_random_window():
    _hu, label = synthetic.make_volume(shape_zyx=(30, 48, 48), spacing_zyx=(2.5, 0.7, 0.7), seed=11)
    runs = _z_runs(label.transpose(2, 1, 0))
    assert runs
    ranks = sorted(RANK[v] for v in runs)
    assert ranks == list(range(ranks[0], ranks[0] + len(ranks)))  # contiguous window


def test_make_volume_is_deterministic():
    kwargs = dict(shape_zyx=(10, 48, 48), spacing_zyx=(2.5, 0.7, 0.7))
    hu1, lab1 = synthetic.make_volume(seed=5, **kwargs)
    hu2, lab2 = synthetic.make_volume(seed=5, **kwargs)
    hu3, _ = synthetic.make_volume(seed=6, **kwargs)
    np.testing.assert_array_equal(hu1, hu2)
    np.testing.assert_array_equal(lab1, lab2)
    assert not np.array_equal(hu1, hu3)


def test_make_raw_tree_is_deterministic(tmp_path):
    kwargs = dict(n_cases=3, shape=(32, 32), n_slices=(6, 10), seed=9)
    a = synthetic.make_raw_tree(tmp_path / "a", **kwargs)
    b = synthetic.make_raw_tree(tmp_path / "b", **kwargs)
    assert [c.case_id for c in a] == [c.case_id for c in b]
    for ca, cb in zip(a, b, strict=True):
        assert ca.image_path.read_bytes() == cb.image_path.read_bytes()
        assert ca.label_path.read_bytes() == cb.label_path.read_bytes()
    split = pathlib.Path("metadata") / "data_split.txt"
    assert (tmp_path / "a" / split).read_bytes() == (tmp_path / "b" / split).read_bytes()
    c = synthetic.make_raw_tree(tmp_path / "c", **{**kwargs, "seed": 10})
    assert [x.case_id for x in c] != [x.case_id for x in a]


def test_write_case_round_trips_hu_for_every_variant(tmp_path):
    hu, label = synthetic.make_volume(
        shape_zyx=(8, 32, 40), spacing_zyx=(2.0, 0.7, 0.8), seed=1, vertebrae=[8, 9]
    )
    for variant in synthetic.VARIANTS:
        case = synthetic.write_case(
            tmp_path,
            "x.1",
            "COLONOG",
            image_zyx=hu,
            label_zyx=label,
            spacing_zyx=(2.0, 0.7, 0.8),
            variant=variant,
            offset_mm=(5.0, -3.0, 100.0),
        )
        image = nib.as_closest_canonical(nib.load(case.image_path))
        seg = nib.as_closest_canonical(nib.load(case.label_path))
        np.testing.assert_array_equal(np.asanyarray(image.dataobj).transpose(2, 1, 0), hu)
        np.testing.assert_array_equal(np.asanyarray(seg.dataobj).transpose(2, 1, 0), label)
        np.testing.assert_allclose(image.header.get_zooms(), (0.8, 0.7, 2.0), rtol=1e-6)
        centre = image.affine @ np.array([*((np.array(image.shape) - 1) / 2), 1.0])
        np.testing.assert_allclose(centre[:3], (5.0, -3.0, 100.0), atol=1e-3)


_ZEROS = np.zeros((2, 8, 8), np.int16)


@pytest.mark.parametrize(
    ("label", "variant", "match"),
    [(_ZEROS.astype(np.uint8), "nope", "variant"), (_ZEROS[:1], "ras-int16", "shape")],
)
def test_write_case_rejects_invalid_arguments(tmp_path, label, variant, match):
    with pytest.raises(ValueError, match=match):
        synthetic.write_case(
            tmp_path,
            "a",
            "COLONOG",
            image_zyx=_ZEROS,
            label_zyx=label,
            spacing_zyx=(1.0, 1.0, 1.0),
            variant=variant,
        )


@pytest.mark.parametrize(("vertebrae", "match"), [(range(1, 8), "do not fit"), ([29], "unknown")])
def test_make_volume_rejects_invalid_vertebrae(vertebrae, match):
    with pytest.raises(ValueError, match=match):
        synthetic.make_volume(
            shape_zyx=(3, 16, 16), spacing_zyx=(1.0, 1.0, 1.0), seed=0, vertebrae=vertebrae
        )


def test_make_raw_tree_rejects_an_invalid_slice_range(tmp_path):
    with pytest.raises(ValueError, match="n_slices"):
        synthetic.make_raw_tree(tmp_path, n_slices=(10, 5))


def test_case_names_are_official_names_in_their_own_section(tree) -> None:
    from ctspine_zarr.io.layout import official_split_file, parse_split_file

    official = parse_split_file(official_split_file().decode())
    for case in tree[1]:
        assert case.case_id in official
        if case.split:
            expected = {"trainset": "train", "test_public": "validation"}
            assert official[case.case_id] == expected.get(case.split, "test")
