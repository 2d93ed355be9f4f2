"""Section ``loader``: DataLoader throughput (2 workers, batch 16), warm and cold.

``SliceDataset`` on the default and the compact store against the Arrow 2d table
``with_format("torch")`` and the DataLoader's own ceiling (``benchmarks.loaders``).
"""

from __future__ import annotations

import statistics

from benchmarks.common import (
    dir_bytes,
    evict_from_page_cache,
    fmt_bytes,
    fmt_ratio,
    markdown_table,
    ratio,
    resident_fraction,
)
from benchmarks.study.config import log
from benchmarks.study.results import Ratio, Section, fmt_fraction
from benchmarks.study.workspace import Workspace

#: A cold DataLoader round is measured only if eviction left at most this much in the cache.
COLD_RESIDENT_MAX = 0.05


def section_loader(ws: Workspace, sec: Section) -> None:
    """DataLoader throughput (2 workers, batch 16): SliceDataset vs Arrow 2d (torch format)."""
    from benchmarks.loaders import (
        BATCH,
        WORKERS,
        CeilingDataset,
        fetch_rate,
        slices_per_second,
    )
    from ctspine_zarr.torch import SliceDataset, default_context

    cfg = ws.cfg
    store = ws.ensure_store()
    compact = ws.ensure_compact_store()
    ours = SliceDataset(store, split=None)
    arrow = ws.arrow("2d", "torch")
    n = min(cfg.loader_slices, len(ours))
    context = default_context()
    contenders = {
        "ours": ours,
        "compact": SliceDataset(compact, split=None),
        "arrow": arrow,
        "ceiling": CeilingDataset(len(ours), ws.cfg.shape),
    }
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    fetches: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(cfg.loader_rounds):
        for name, dataset in contenders.items():
            log(f"loader: round {r + 1}/{cfg.loader_rounds}, {name} ...")
            rates[name].append(slices_per_second(dataset, n, context, seed=cfg.seed + r))
            fetches[name].append(fetch_rate(dataset, n, seed=cfg.seed + r))
    # cold: every file of the loader's data dropped from the page cache right before its
    # run, as when the dataset does not fit in memory (the Arrow copy of CTSpine1K is ~1.1 TB)
    files = {"ours": store, "compact": compact, "arrow": ws.ensure_arrow("2d")}
    cold: dict[str, list[float]] = {k: [] for k in files}
    left: dict[str, list[float]] = {k: [] for k in files}  # resident fraction after eviction
    for r in range(cfg.loader_rounds):
        for name, path in files.items():
            log(f"loader: cold round {r + 1}/{cfg.loader_rounds}, {name} ...")
            if name == "arrow":
                # pages stay cached while any process maps them: release every mapping of
                # the table (the DataLoader's workers are gone), evict, then map it afresh
                del arrow
                contenders.pop("arrow")
                ws.drop_arrow("2d")
            evict_from_page_cache(path)
            fraction = resident_fraction(path)
            if name == "arrow":
                arrow = contenders["arrow"] = ws.arrow("2d", "torch")
            if fraction is None or fraction > COLD_RESIDENT_MAX:
                left[name].append(-1.0 if fraction is None else fraction)
                continue
            left[name].append(fraction)
            cold[name].append(
                slices_per_second(contenders[name], n, context, seed=cfg.seed + 100 + r)
            )
    cmed = {k: statistics.median(v) if v else None for k, v in cold.items()}
    sizes = {
        "ours": dir_bytes(store),
        "compact": dir_bytes(compact),
        "arrow": dir_bytes(ws.ensure_arrow("2d")),
        "ceiling": None,
    }
    med = {k: statistics.median(v) for k, v in rates.items()}
    fmed = {k: statistics.median(v) for k, v in fetches.items()}
    labels = {
        "ours": "**ours: `ctspine_zarr.torch.SliceDataset`**",
        "compact": "ours, on the `--codec compact` store",
        "arrow": "HF Arrow 2d `with_format('torch')` [anchor]",
        "ceiling": "DataLoader alone: the same tensors as every item (the ceiling)",
    }
    rows = [
        [
            labels[k],
            f"{med[k]:.0f}",
            " / ".join(f"{v:.0f}" for v in rates[k]),
            fmt_ratio(ratio(med[k], med["arrow"])),
            "-"
            if k == "ceiling"
            else f"{fmed[k]:.0f} ({fmt_ratio(ratio(fmed[k], fmed['arrow']))})",
            fmt_bytes(sizes[k]),
            fmt_fraction(ratio(sizes[k], sizes["arrow"])),
            "-"
            if cmed.get(k) is None
            else f"{cmed[k]:.0f} ({fmt_ratio(ratio(cmed[k], cmed['arrow']))})",
        ]
        for k in labels  # the table's order (the cold rounds re-insert Arrow)
    ]
    sec.lines += [
        f"`DataLoader(ds, batch_size={BATCH}, num_workers={WORKERS}, shuffle=True, "
        f"multiprocessing_context={context!r}, persistent_workers=True)`, {n} slices timed per "
        f"round after 2 warm-up batches (worker start excluded), {cfg.loader_rounds} "
        "round(s), loaders interleaved; median reported (`benchmarks.loaders`). 'Item path "
        "alone': `__getitems__` of 16 random indices in-process (no worker, no collation). "
        "'Cold': the same DataLoader right after every file of that loader's data was dropped "
        "from the page cache (fsync + `posix_fadvise(DONTNEED)`), as when the data does not "
        "fit in memory (CTSpine1K's Arrow copy is ~1.1 TB); median of the same number of "
        "rounds. The other columns are warm: the files were read before and stay cached.",
        "",
        markdown_table(
            [
                "training loader",
                "slices/s (median)",
                "per round",
                "vs Arrow",
                "item path alone, slices/s (vs Arrow)",
                "bytes",
                "bytes vs Arrow",
                "cold: slices/s (vs Arrow)",
            ],
            rows,
        ),
    ]
    sec.data = {
        "slices_timed": n,
        "rates": rates,
        "item_path_rates": fetches,
        "cold_rates": cold,
        "cold_resident_after_eviction": left,
        "bytes": sizes,
        "context": context,
    }
    not_cold = sorted(k for k, v in left.items() if len(cold[k]) < len(v))
    if not_cold:
        sec.lines += [
            "",
            f"Cold rounds not measured for {', '.join(not_cold)}: after eviction "
            f"{max(max(left[k]) for k in not_cold):.0%} of the files stayed in the page cache "
            "(-100% means residency could not be read: not Linux). tmpfs cannot evict.",
        ]
    sec.lines += [
        "",
        "The ceiling row is the DataLoader's own cost (worker hand-off, collation of 3 MB a "
        "slice into shared memory): no dataset with these items goes faster through it, so "
        f"{fmt_ratio(ratio(med['ceiling'], med['arrow']))} is the most any loader can reach "
        "against Arrow here.",
    ]
    value = ratio(med["ours"], med["arrow"])
    sec.ratios.append(
        Ratio(
            "3c",
            f"{fmt_ratio(value)} ({med['ours']:.0f} vs {med['arrow']:.0f} slices/s; item path "
            f"alone {fmt_ratio(ratio(fmed['ours'], fmed['arrow']))}; compact store "
            f"{fmt_ratio(ratio(med['compact'], med['arrow']))}; DataLoader ceiling "
            f"{fmt_ratio(ratio(med['ceiling'], med['arrow']))}; cold: "
            f"{fmt_ratio(ratio(cmed['ours'], cmed['arrow']))}, compact "
            f"{fmt_ratio(ratio(cmed['compact'], cmed['arrow']))})",
            value,
        )
    )
