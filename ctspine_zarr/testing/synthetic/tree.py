"""Synthetic raw trees: cases laid out like the Hugging Face copy of CTSpine1K, a split file.

:func:`make_raw_tree` plans each case (source, official case name, split section, header
variant, slice count and spacing, spine window, position), renders it with
:func:`~ctspine_zarr.testing.synthetic.volume.make_volume`, writes it with
:func:`~ctspine_zarr.testing.synthetic.nifti.write_case`, and writes the CRLF
``data_split.txt`` with :func:`write_split_file`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from ctspine_zarr.schema import SOURCES, SPLIT_SECTIONS
from ctspine_zarr.vertebrae import L6_LABEL, T13_LABEL, vertebra_name

from .defects import DEFECT_KINDS, can_take, inject_defect, parse_defects
from .nifti import VARIANTS, SyntheticCase, nifti_name, write_case
from .spine import SACRUM, fit_window, pick_window, spine_sequence
from .volume import make_volume

__all__ = ["make_raw_tree", "official_names", "write_split_file"]

_SPLIT_FILE_SECTIONS: Final = tuple(SPLIT_SECTIONS)
_NO_SECTION: Final = ""

#: Slice spacings (mm) a case of each source is given.
_SLICE_MM: Final[dict[str, tuple[float, ...]]] = {
    "COLONOG": (1.0, 1.25, 1.5, 2.0, 2.5),
    "HNSCC-3DCT-RT": (1.0, 2.0, 2.5, 3.0),
    "MSD-T10": (1.0, 2.5, 5.0),
    "COVID-19": (1.0, 1.25, 2.5, 5.0),
}

#: Longest z extent (mm) for which a slice spacing is picked, so bodies keep a plausible length.
_MAX_EXTENT_MM: Final[dict[str, float]] = {
    "COLONOG": 600.0,
    "HNSCC-3DCT-RT": 450.0,
    "MSD-T10": 450.0,
    "COVID-19": 450.0,
}

#: Section of case ``i`` (cycled); one case is in no section when there are at least five.
_SPLIT_CYCLE: Final = (
    "trainset",
    "trainset",
    "test_public",
    "trainset",
    "test_private",
    "trainset",
    "trainset",
    "trainset",
    "test_public",
    "trainset",
)


def _source_of(name: str) -> str | None:
    """The source folder of an official case name, by its form."""
    if name.startswith(("1.3.6.1.4.1.9328.50.4.", "CTC-")):
        return "COLONOG"
    if name.startswith("HN_P"):
        return "HNSCC-3DCT-RT"
    if name.startswith("liver_"):
        return "MSD-T10"
    if name.startswith("volume-covid19-"):
        return "COVID-19"
    return None


@functools.cache
def official_names() -> dict[tuple[str, str], tuple[str, ...]]:
    """``{(section, source): names}`` of the official split file the package ships."""
    from ctspine_zarr.io.layout import case_id_from_name, official_split_file

    names: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in official_split_file().decode("utf-8-sig").splitlines():
        entry = line.strip()
        if entry.endswith(":"):
            section = entry[:-1]
        elif entry:
            case_id = case_id_from_name(entry) or entry
            source = _source_of(case_id)
            if source is not None:
                names.setdefault((section, source), []).append(case_id)
    return {key: tuple(value) for key, value in names.items()}


def _new_case_id(rng: np.random.Generator, source: str, section: str, used: set[str]) -> str:
    """An unused real CTSpine1K name of ``source`` that the official file lists in ``section``.

    A case in no section takes a name of any section (the tree's split file leaves it out).
    """
    sections = [section] if section else list(_SPLIT_FILE_SECTIONS)
    pool = [n for s in sections for n in official_names().get((s, source), ())]
    free = [n for n in pool if n not in used]
    if not free:
        raise RuntimeError(f"no unused official {source} name left in {sections}")
    cid = free[int(rng.integers(len(free)))]
    used.add(cid)
    return cid


def _case_window(
    rng: np.random.Generator, index: int, source: str, extent_mm: float, nz: int
) -> list[int]:
    """Spine window of case ``index``: source-typical, with L6 / T13 / sacrum variations."""
    nth = index // len(SOURCES)
    if source == "COLONOG":
        l6 = nth % 2 == 1
        seq = spine_sequence(l6=l6)
        anchor = L6_LABEL if l6 else SACRUM
        window = pick_window(seq, extent_mm, anchor, "middle" if l6 else "bottom")
    elif source == "HNSCC-3DCT-RT":
        seq = spine_sequence()
        anchor = int(rng.integers(1, 3))
        window = pick_window(seq, extent_mm, anchor, "top")
    elif source == "MSD-T10":
        t13 = nth % 3 == 0
        seq = spine_sequence(t13=t13)
        anchor = T13_LABEL if t13 else int(rng.integers(18, 21))
        window = pick_window(seq, extent_mm, anchor, "middle")
    else:
        seq = spine_sequence()
        anchor = int(rng.integers(6, 9))
        window = pick_window(seq, extent_mm, anchor, "top")
    return fit_window(window, anchor, nz)


@dataclass(frozen=True)
class _CasePlan:
    """Everything drawn for one case of a tree before its volume is rendered."""

    case_id: str
    source: str
    variant: str
    split: str
    nz: int
    spacing_zyx: tuple[float, float, float]
    window: list[int]
    offset_mm: tuple[float, float, float]
    seed: int


def _plan_case(
    rng: np.random.Generator, i: int, n_cases: int, n_slices: tuple[int, int], used: set[str]
) -> _CasePlan:
    """Case ``i`` of ``n_cases``: round-robin source and variant, the rest drawn from ``rng``."""
    source = SOURCES[i % len(SOURCES)]
    if n_cases >= 5 and i == n_cases - 1:
        split = _NO_SECTION
    else:
        split = _SPLIT_CYCLE[i % len(_SPLIT_CYCLE)]
    case_id = _new_case_id(rng, source, split, used)
    nz = int(rng.integers(n_slices[0], n_slices[1] + 1))
    fits = [mm for mm in _SLICE_MM[source] if nz * mm <= _MAX_EXTENT_MM[source]]
    sz = float(rng.choice(fits)) if fits else min(_SLICE_MM[source])
    sxy = round(float(rng.integers(310, 461)) / 512.0, 6)
    window = _case_window(rng, i, source, nz * sz, nz)
    offset = (
        float(rng.uniform(-20.0, 20.0)),
        float(rng.uniform(-40.0, 40.0)),
        float(rng.uniform(-700.0, 100.0)),
    )
    return _CasePlan(
        case_id=case_id,
        source=source,
        variant=VARIANTS[i % len(VARIANTS)],
        split=split,
        nz=nz,
        spacing_zyx=(sz, sxy, sxy),
        window=window,
        offset_mm=offset,
        seed=int(rng.integers(2**31)),
    )


def make_raw_tree(
    root: str | os.PathLike[str],
    *,
    n_cases: int = 6,
    shape: tuple[int, int] = (512, 512),
    n_slices: tuple[int, int] = (40, 120),
    seed: int = 0,
    split_file: bool = True,
    gz: bool = True,
    defects: Sequence[tuple[str, int | None]] | Sequence[str] = (),
) -> list[SyntheticCase]:
    """Write a CTSpine1K-like raw tree under root and return its cases.

    Cases go round-robin over :data:`ctspine_zarr.schema.SOURCES` (COLONOG first, with a
    dotted id) and cycle through :data:`VARIANTS`, so ``n_cases >= 6`` covers every header
    quirk. In-plane spacing is 0.6-0.9 mm, slice spacing 1-5 mm; each case covers a
    source-typical window of the spine (lumbar with sacrum, cervical, thoracolumbar with T13
    in some, thoracic; every other lumbar case has an L6).

    Parameters
    ----------
    root
        Tree root (created if missing).
    n_cases
        Number of cases.
    shape
        In-plane size ``(Y, X)``.
    n_slices
        Inclusive ``(min, max)`` range of the per-case slice count.
    seed
        Seed; the same seed writes the same bytes.
    split_file
        Write ``metadata/data_split.txt`` (CRLF; most cases in ``trainset``, some in
        ``test_public`` / ``test_private``, one case in no section when ``n_cases >= 5``, and
        one listed name without files). Names are the image file names.
    gz
        Write ``.nii.gz`` (else ``.nii``).
    defects
        Label defects to inject, for testing the audit: ``(kind, case index)`` pairs (index
        None: the first case that can take it) or ``"KIND[:CASE]"`` strings (``"all"``: one
        of each kind), see :mod:`~ctspine_zarr.testing.synthetic.defects`. One defect per
        case; each case's ``defects`` says what was injected, and
        ``metadata/defects.json`` lists them. The images and the other cases are unchanged.

    Returns
    -------
    list of SyntheticCase
        The cases, in writing order.

    Raises
    ------
    ValueError
        On a negative ``n_cases``, an invalid ``n_slices`` range, or defects that cannot be
        placed (an unknown kind, a case index out of range or given twice, a case whose
        vertebrae cannot take its defect).
    """
    if n_cases < 0:
        raise ValueError(f"n_cases must be >= 0, got {n_cases}")
    lo, hi = int(n_slices[0]), int(n_slices[1])
    if lo < 1 or hi < lo:
        raise ValueError(
            f"n_slices must be a (min, max) range with 1 <= min <= max, got {n_slices!r}"
        )
    ny, nx = int(shape[0]), int(shape[1])
    root = pathlib.Path(root)
    rng = np.random.default_rng(seed)
    used: set[str] = set()
    plans = [_plan_case(rng, i, n_cases, (lo, hi), used) for i in range(n_cases)]
    common = Counter(v for plan in plans for v in plan.window[1:-1])
    chosen = _place_defects(plans, defects, common)
    cases = [
        _write_planned_case(root, plan, (ny, nx), gz, chosen.get(i), common)
        for i, plan in enumerate(plans)
    ]
    if chosen:
        _write_defects(root, cases)
    if split_file:
        _write_tree_split_file(root, cases, rng, used, gz)
    return cases


def _place_defects(
    plans: Sequence[_CasePlan],
    defects: Sequence[tuple[str, int | None]] | Sequence[str],
    common: Mapping[int, int],
) -> dict[int, str]:
    """``{case index: kind}``: the given indexes, then the first free case that can take it
    (for ``size``, the one whose inner vertebrae include the level most cases hold whole)."""
    pairs = [d for d in defects if not isinstance(d, str)]
    pairs += parse_defects([d for d in defects if isinstance(d, str)])
    chosen: dict[int, str] = {}
    for kind, index in sorted(pairs, key=lambda pair: pair[1] is None):
        if kind not in DEFECT_KINDS:
            raise ValueError(f"defect must be one of {', '.join(DEFECT_KINDS)}, but is {kind!r}")
        if index is None:
            free = [i for i, p in enumerate(plans) if i not in chosen and can_take(kind, p.window)]
            if not free:
                raise ValueError(f"no case left of the {len(plans)} can take the {kind} defect")
            if kind == "size":
                free.sort(key=lambda i: -max(common[v] for v in plans[i].window[1:-1]))
            index = free[0]
        if not 0 <= index < len(plans):
            raise ValueError(f"defect {kind}:{index}: the tree has cases 0 to {len(plans) - 1}")
        if index in chosen:
            raise ValueError(f"case {index} gets two defects ({chosen[index]} and {kind})")
        if not can_take(kind, plans[index].window):
            window = plans[index].window
            names = f"{vertebra_name(window[0])}-{vertebra_name(window[-1])}"
            raise ValueError(
                f"case {index} ({plans[index].case_id}, vertebrae {names}) holds too few "
                f"vertebrae for the {kind} defect; choose another case"
            )
        chosen[index] = kind
    return chosen


def _write_defects(root: pathlib.Path, cases: Sequence[SyntheticCase]) -> None:
    """``metadata/defects.json``: the injected defects, what the audit must find."""
    entries = [
        {"case": c.case_id, "kind": d.kind, "labels": list(d.labels), "description": d.description}
        for c in cases
        for d in c.defects
    ]
    path = root / "metadata" / "defects.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=2) + "\n", "utf-8")


def _write_planned_case(
    root: pathlib.Path,
    plan: _CasePlan,
    shape: tuple[int, int],
    gz: bool,
    defect: str | None = None,
    common: Mapping[int, int] | None = None,
) -> SyntheticCase:
    """Render the volume of ``plan``, inject its defect (if any) and write it into the tree."""
    hu, lab = make_volume(
        shape_zyx=(plan.nz, *shape),
        spacing_zyx=plan.spacing_zyx,
        seed=plan.seed,
        vertebrae=plan.window,
        colon_gas=plan.source == "COLONOG",
        contrast=plan.source in ("MSD-T10", "HNSCC-3DCT-RT") and bool(plan.seed % 2),
    )
    injected = () if defect is None else (inject_defect(lab, defect, plan.window, common),)
    case = write_case(
        root,
        plan.case_id,
        plan.source,
        image_zyx=hu,
        label_zyx=lab,
        spacing_zyx=plan.spacing_zyx,
        variant=plan.variant,
        split=plan.split,
        offset_mm=plan.offset_mm,
        gz=gz,
    )
    return dataclasses.replace(case, defects=injected)


def _write_tree_split_file(
    root: pathlib.Path,
    cases: list[SyntheticCase],
    rng: np.random.Generator,
    used: set[str],
    gz: bool,
) -> None:
    """``metadata/data_split.txt`` listing ``cases`` by section, plus one name without files."""
    sections: dict[str, list[str]] = {name: [] for name in _SPLIT_FILE_SECTIONS}
    for case in cases:
        if case.split:
            sections[case.split].append(case.image_path.name)
    # the dangling name goes in the middle of the training set
    dangling_source = SOURCES[len(cases) % len(SOURCES)]
    dangling = _new_case_id(rng, dangling_source, "trainset", used)
    train = sections["trainset"]
    train.insert(len(train) // 2, nifti_name(dangling, gz))
    write_split_file(root / "metadata" / "data_split.txt", sections)


def write_split_file(
    path: str | os.PathLike[str], sections: Mapping[str, Sequence[str]]
) -> pathlib.Path:
    """Write a CTSpine1K-style ``data_split.txt`` with CRLF line ends.

    Each section is a ``name:`` line followed by one file name per line; sections are
    separated by a blank line, as in the real file.

    Parameters
    ----------
    path
        Output file; parent folders are created.
    sections
        Section name (e.g. ``"trainset"``) to file names, written in the given order.

    Returns
    -------
    pathlib.Path
        The written path.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for n, (name, files) in enumerate(sections.items()):
        if n:
            lines.append("")
        lines.append(f"{name}:")
        lines.extend(files)
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path
