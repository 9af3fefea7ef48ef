"""PNG plots of a ``fastml bench`` run (matplotlib, headless).

Per device and family: GB/s against size, one panel per op, a line per implementation and the
floor kernel dashed. Per device: fastml's speed-up over each peer at each op's largest size.
"""

import math
import os

from .report import _families, _peers, largest

# One colour per implementation in every plot; others get a stable colour from their name.
_COLORS = {"fastml": "tab:blue", "numpy": "tab:orange", "torch": "tab:red",
           "torch_fused": "tab:purple", "torch_foreach": "tab:brown", "sklearn": "tab:green",
           "floor": "black"}
_SPARE = ("tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede the pyplot import
    import matplotlib.pyplot as plt

    return plt



def _color(impl):
    return _COLORS.get(impl) or _SPARE[sum(map(ord, impl)) % len(_SPARE)]


def _size(n):
    """1000 -> "1k", 8192000 -> "8.19M"."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def _label(y):
    return f"{y:.0f}" if y >= 10 else f"{y:.2g}"


def gbps_vs_size(rows, family, path, device):
    """One panel per op of ``family``: GB/s of each implementation and the floor vs size."""
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter

    rows = [r for r in rows if r["family"] == family]
    ops = list(dict.fromkeys(r["op"] for r in rows))
    ncols = min(3, len(ops))
    nrows = math.ceil(len(ops) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(6.5, 4.6 * ncols), 3.6 * nrows),
                             squeeze=False)
    impls = ["floor", "fastml"] + _peers(rows)
    for ax, op in zip(axes.flat, ops, strict=False):
        mine = [r for r in rows if r["op"] == op]
        for impl in impls:
            pts = sorted((r["size"], r["GB_s"]) for r in mine if r["impl"] == impl)
            if not pts:
                continue
            x, y = zip(*pts, strict=True)
            label = f"floor ({mine[0]['floor_pattern']})" if impl == "floor" else impl
            ax.plot(x, y, "--x" if impl == "floor" else "-o", color=_color(impl),
                    label=label, lw=1.4 if impl == "floor" else 1.8, ms=6 if impl == "floor"
                    else 4)
        ax.set_xscale("log")
        sizes = sorted({r["size"] for r in mine})
        ax.set_xticks(sizes, [_size(n) for n in sizes])  # the measured sizes, not decades
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yscale("log")
        ax.set_title(op, fontsize=10)
        ax.set_xlabel("elements (log scale)")
        ax.set_ylabel("GB/s (useful bytes / median)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(ops):]:
        ax.set_visible(False)
    fig.suptitle(f"{family} ({device}): throughput vs size; dashed: bandwidth floor")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def speedup_bars(rows, path, device):
    """Grouped bars: fastml's speed-up over each peer (peer / fastml median), largest sizes."""
    plt = _pyplot()
    heads = largest(rows)
    peers = _peers(rows)
    widest = max((len(r.get("speedup", {})) for r in heads), default=1)
    width = 0.8 / max(1, widest)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(heads) + 2), 4.4))
    drawn = set()
    for i, r in enumerate(heads):
        mine = [p for p in peers if r.get("speedup", {}).get(p)]
        for j, peer in enumerate(mine):
            y = r["speedup"][peer]
            x = i + (j - (len(mine) - 1) / 2) * width
            bar = ax.bar([x], [y], width, color=_color(peer),
                         label=None if peer in drawn else peer)
            drawn.add(peer)
            ax.bar_label(bar, [_label(y)], fontsize=7, padding=1)
    ax.axhline(1.0, color="black", lw=1)
    ax.set_yscale("log")
    ax.set_xticks(range(len(heads)))
    ax.set_xticklabels([f"{r['op']}\n{r['shape']}" for r in heads], fontsize=7, rotation=30,
                       ha="right")
    ax.set_ylabel("speed-up of fastml (peer time / fastml time)")
    ax.set_title(f"fastml vs peers ({device}, largest size of each op; above 1: fastml faster)",
                 fontsize=10)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_plots(rows, outdir):
    """Write every plot into ``outdir``; returns the file names. Raises ImportError without
    matplotlib."""
    _pyplot()
    files = []
    for device in ("cpu", "cuda"):
        mine = [r for r in rows if r["device"] == device]
        if not mine:
            continue
        for family in _families(mine):
            name = f"{device}_{family}_gbps.png"
            gbps_vs_size(mine, family, os.path.join(outdir, name), device)
            files.append(name)
        if any(r.get("speedup") for r in mine):
            name = f"{device}_speedup.png"
            speedup_bars(mine, os.path.join(outdir, name), device)
            files.append(name)
    return files
