"""The vertebra vocabulary, as data: VerSe numbers, names, regions, order, colours, parsing.

Every picture, filter, statistic and format document takes its vertebra words from here.

VerSe numbering (0 is background): 1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, 26 sacrum,
27 coccyx, 28 T13. T13 sits between T12 and L1, L6 below L5.
"""

from __future__ import annotations

from typing import Final

import numpy as np

__all__ = [
    "ANATOMICAL_ORDER",
    "COCCYX_LABEL",
    "L6_LABEL",
    "MAX_LABEL",
    "OTHER_LABEL_COLOUR",
    "REGIONS",
    "SACRUM_LABEL",
    "T13_LABEL",
    "VERTEBRA_COLOURS",
    "VERTEBRA_LABELS",
    "VERTEBRA_NAMES",
    "parse_vertebra",
    "region_of",
    "vertebra_colours",
    "vertebra_name",
]

#: VerSe label values and their names (0 is background).
VERTEBRA_NAMES: Final[dict[int, str]] = {
    **{i: f"C{i}" for i in range(1, 8)},
    **{i + 7: f"T{i}" for i in range(1, 13)},
    **{i + 19: f"L{i}" for i in range(1, 7)},
    26: "sacrum",
    27: "coccyx",
    28: "T13",
}
VERTEBRA_LABELS: Final = tuple(VERTEBRA_NAMES)
MAX_LABEL: Final = max(VERTEBRA_LABELS)
L6_LABEL: Final = 25
SACRUM_LABEL: Final = 26
COCCYX_LABEL: Final = 27
T13_LABEL: Final = 28
#: Every VerSe label in cranio-caudal order: T13 between T12 and L1, L6 after L5.
ANATOMICAL_ORDER: Final[tuple[int, ...]] = (*range(1, 20), T13_LABEL, *range(20, 28))

#: Spine regions and their labels in cranio-caudal order.
REGIONS: Final[dict[str, tuple[int, ...]]] = {
    "cervical": tuple(range(1, 8)),
    "thoracic": (*range(8, 20), T13_LABEL),
    "lumbar": tuple(range(20, 26)),
    "sacrum": (SACRUM_LABEL,),
    "coccyx": (COCCYX_LABEL,),
}

#: One colour per label, by region: cervical blues, thoracic greens (T13 a dark teal),
#: lumbar oranges to reds (L6 the darkest), the sacrum purple, the coccyx magenta; within a
#: region the shade darkens cranio-caudally (matplotlib's Blues, Greens and Oranges maps).
VERTEBRA_COLOURS: Final[dict[int, str]] = {
    1: "#94c4df", 2: "#6fb0d7", 3: "#4f9bcb", 4: "#3585bf", 5: "#1d6cb1", 6: "#0b559f",
    7: "#083c7d", 8: "#a9dca3", 9: "#97d492", 10: "#83cb82", 11: "#6ec173", 12: "#58b668",
    13: "#42ab5d", 14: "#349d53", 15: "#278f48", 16: "#18823d", 17: "#097532", 18: "#006529",
    19: "#005321", 20: "#fda762", 21: "#fc8a39", 22: "#f26b15", 23: "#dd4d04", 24: "#b33b02",
    25: "#8c2d04", 26: "#7b1fa2", 27: "#c2185b", 28: "#00695c",
}  # fmt: skip
#: The colour of label values outside 1-28 (gold: it stands out from every region's colour).
OTHER_LABEL_COLOUR: Final = "#ffd700"

_BY_NAME: Final = {name.lower(): label for label, name in VERTEBRA_NAMES.items()}


def vertebra_name(label: int) -> str:
    """Return the VerSe name of a label value (``22 -> "L3"``; other values ``"label 40"``)."""
    return VERTEBRA_NAMES.get(int(label), f"label {int(label)}")


def vertebra_colours() -> dict[int, str]:
    """Return a hex colour per VerSe label 1..28 (a copy of :data:`VERTEBRA_COLOURS`)."""
    return dict(VERTEBRA_COLOURS)


def region_of(label: int) -> str:
    """Return the region of a VerSe label (``"cervical"`` ... ``"coccyx"``).

    Raises
    ------
    ValueError
        For a value that is not a VerSe label.
    """
    for region, labels in REGIONS.items():
        if int(label) in labels:
            return region
    raise ValueError(f"label must be a VerSe label 1-28, but is {label!r}")


def parse_vertebra(vertebra: int | str) -> int:
    """Return the VerSe label value of ``vertebra`` (a label like ``22`` or a name like ``"L3"``).

    Raises
    ------
    ValueError
        For anything that is not a VerSe label (1-28) or name.
    """
    if isinstance(vertebra, str):
        text = vertebra.strip()
        if text.lower() in _BY_NAME:
            return _BY_NAME[text.lower()]
        if text.isdigit():
            return parse_vertebra(int(text))
    elif isinstance(vertebra, int | np.integer) and int(vertebra) in VERTEBRA_NAMES:
        return int(vertebra)
    names = ", ".join(VERTEBRA_NAMES.values())
    raise ValueError(f"vertebra must be a VerSe label 1-28 or one of {names}; got {vertebra!r}")
