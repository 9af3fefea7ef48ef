"""Write a ``fastml bench`` result as ``results.json`` (every raw row) and ``report.md``.

The result is one dict (see :func:`fastml.bench.command.run`): ``meta`` (command, profile,
machine, load, wall time), ``rows`` (one per implementation, floor included, per case and
device, with per-round times), ``failures``, ``compile``, ``gpu``, ``plots`` and ``notes``.
"""

import json
import math

from .plan import FAMILY_ORDER
from .runner import GPU_MIN_CALLS

PEER_ORDER = ("numpy", "torch", "torch_fused", "torch_foreach", "sklearn")
BUSY_MARK = 0.25  # other processes used more than this share of the CPUs during a case


def write_json(result, path):
    with open(path, "w") as f:
        json.dump(result, f, indent=1, default=str)


def _num(x, digits=3):
    """``x`` with ``digits`` significant digits, never in exponent form above 1e-4."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:,.0f}"
    return f"{x:.{digits}g}" if abs(x) >= 1e-4 else f"{x:.2e}"


def _x(x):
    return "-" if x is None else f"{x:.2f}x"


def _table(head, lines):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]
    return out


def _families(rows):
    seen = {r["family"] for r in rows}
    return [f for f in FAMILY_ORDER if f in seen] + sorted(seen - set(FAMILY_ORDER))


def _peers(rows):
    seen = {r["impl"] for r in rows} - {"fastml", "floor"}
    return [p for p in PEER_ORDER if p in seen] + sorted(seen - set(PEER_ORDER))


def _cases(rows):
    """Rows grouped by case (op, size), in run order: ``[(key, {impl: row})]``."""
    groups = {}
    for r in rows:
        groups.setdefault((r["op"], r["shape"], r["size"]), {})[r["impl"]] = r
    return list(groups.items())


def largest(rows):
    """The fastml row of each op at its largest size (the report's headline rows)."""
    best = {}
    for r in rows:
        if r["impl"] == "fastml" and (r["op"] not in best or r["size"] > best[r["op"]]["size"]):
            best[r["op"]] = r
    order = {f: i for i, f in enumerate(_families(rows))}
    return sorted(best.values(), key=lambda r: order[r["family"]])


def summary_lines(rows):
    """Markdown table: per op at its largest size, fastml's time, GB/s, x floor, speed-ups."""
    heads = largest(rows)
    peers = _peers(rows)
    head = ["family", "op", "size", "fastml ms", "GB/s", "floor GB/s", "x floor"]
    head += [f"vs {p}" for p in peers] + ["max rel err"]
    lines = []
    for r in heads:
        mark = " †" if r.get("others_busy", 0) > BUSY_MARK else ""
        err = r.get("check_error")
        err_s = "-" if err is None else (f"{err:.1e}" + (" FAILED" if err > 1e-4 else ""))
        lines.append([r["family"], r["op"] + mark, r["shape"], _num(r["median_ms"]),
                      _num(r["GB_s"]), _num(r["floor_GB_s"]), _x(r["x_floor"])]
                     + [_x(r.get("speedup", {}).get(p)) for p in peers] + [err_s])
    return _table(head, lines)


def family_lines(rows, family):
    """Markdown table of one family: every case, floor first, then fastml, then the peers."""
    head = ["op", "size", "impl", "median ms", "IQR ms", "min-max ms", "rounds x calls",
            "GB/s", "x floor", "fastml speed-up"]
    lines = []
    for _, impls in _cases([r for r in rows if r["family"] == family]):
        order = ["floor", "fastml"] + [k for k in impls if k not in ("floor", "fastml")]
        for name in order:
            r = impls.get(name)
            if r is None:
                continue
            label = f"floor ({r['floor_pattern']})" if name == "floor" else f"**{name}**" \
                if name == "fastml" else name
            lines.append([r["op"], r["shape"], label, _num(r["median_ms"]), _num(r["iqr_ms"]),
                          f"{_num(r['min_ms'])}-{_num(r['max_ms'])}",
                          f"{r['rounds']} x {r['number']}", _num(r["GB_s"]),
                          _x(r["x_floor"]), _x(r.get("fastml_speedup"))])
    return _table(head, lines)


def bandwidth_lines(rows):
    """The floor kernels' bandwidth per byte pattern and size: the machine's, in this run."""
    floors = {}
    for r in rows:
        if r["impl"] == "floor":
            floors.setdefault((r["floor_pattern"], r["size"]), []).append(r["GB_s"])
    lines = [[p, f"{n:,}", _num(min(v)), _num(sorted(v)[len(v) // 2]), _num(max(v)), len(v)]
             for (p, n), v in sorted(floors.items())]
    return _table(["pattern", "elements", "min GB/s", "median GB/s", "max GB/s", "cases"],
                  lines)


def _compile_lines(comp):
    if comp is None:
        return ["Not measured."]
    if "skipped" in comp:
        return [f"Skipped: {comp['skipped']}."]
    if "error" in comp:
        return [f"Failed: `{comp['error']}`."]
    out = [f"A fresh interpreter imports fastml and calls each family once on tiny float32 "
           f"inputs, with `NUMBA_CACHE_DIR` set to a new empty directory (cold: every kernel "
           f"compiles) and then again with the same directory (cached: kernels load from "
           f"disk). The first call includes one tiny run; `steady` is the best of 3 later "
           f"calls. Calls run in the order listed, so one whose kernels an earlier call "
           f"compiled costs next to nothing (AdamW shares Adam's). Interpreter wall time: "
           f"cold {comp['cold_wall_s']:.1f} s, cached {comp['cached_wall_s']:.1f} s.", ""]
    lines = [[r["name"], _num(r["cold_s"]), _num(r["cached_s"]),
              _num(1e3 * r["steady_s"]) if r["steady_s"] is not None else "-"]
             for r in comp["rows"]]
    lines.append(["**total**", _num(sum(r["cold_s"] for r in comp["rows"])),
                  _num(sum(r["cached_s"] for r in comp["rows"])), ""])
    return out + _table(["first call", "cold s", "cached s", "steady ms"], lines)


def _machine_lines(meta):
    m = meta["machine"]
    v = m["versions"]
    cores = f"{m['physical_cores']} cores, " if m.get("physical_cores") else ""
    vers = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    missing = ", ".join(k for k, val in v.items() if not val)
    lines = [
        f"- CPU: {m['cpu']} ({cores}{m['logical_cpus']} logical CPUs, {m['usable_cpus']} "
        f"usable); numba threads: {m['numba_threads']} (PyTorch set to the same)",
        f"- RAM: {m['ram_gib']} GiB; OS: {m['os']}",
        f"- Versions: {vers}" + (f" (not installed: {missing})" if missing else ""),
        f"- Date: {m['date']}; load average (1 min) before {meta['load_before']}, after "
        f"{meta['load_after']}",
    ]
    return lines


def _method_lines(meta):
    p = meta["profile"]
    return [
        f"Profile `{p['name']}`: up to {p['rounds']} timed rounds per implementation after "
        f"{p['warmup']} untimed warm-up call(s) (JIT compile, first touch); a peer that needs "
        f"longer than {p['impl_budget_s']:g} s for its rounds gets fewer (at least "
        f"{p['min_rounds']}). Within a case the floor kernel and every implementation run "
        f"round-robin, the order rotating each round, so a change of load hits all alike. "
        + (f"A round repeats a call until it lasts {1e3 * p['min_sample_s']:g} ms and "
           f"reports the time per call; a GPU round queues at least {GPU_MIN_CALLS} calls "
           f"back to back, so that the host's launch work overlaps the device's, as in a "
           f"training loop." if p["min_sample_s"] else f"A round is one call (on the GPU, "
           f"{GPU_MIN_CALLS} queued calls)."),
        "",
        "`--quiet`: before every round the run waited (up to 60 s) until other processes left "
        "the CPUs idle." if meta.get("quiet") else "Rounds ran without waiting for idle CPUs "
        "(`--quiet` waits); † in the summary marks cases measured under load.",
        "",
        "- **GB/s**: the op's useful bytes (inputs read once + outputs written once, "
        "docs/design.md section 3) / median time.",
        "- **floor**: a trivial numba kernel with the op's byte pattern over the same number "
        "of elements, in the same run: the machine's memory bandwidth for that pattern. "
        "**x floor** = median time / the floor's time for the same bytes (1.00x is the "
        "bandwidth limit).",
        "- **speed-up** (vs a peer, or fastml speed-up on a peer's row) = peer median / "
        "fastml median: above 1 fastml is faster.",
        "- IQR = 75th - 25th percentile of the rounds; every round's time is in results.json.",
    ]


def _gpu_lines(gpu, rows):
    if not gpu.get("requested"):
        return ["Not requested (`--device cpu`)."]
    if not gpu.get("available"):
        return [f"Skipped: {gpu.get('reason')}."]
    out = [f"Device: {gpu.get('device')}. Timed with CUDA events on the default stream."]
    if gpu.get("copy_GB_s"):
        out.append(f"Device-to-device copy bandwidth: {gpu['copy_GB_s']:.0f} GB/s.")
    if gpu.get("skipped"):
        return out + ["", f"GPU cases skipped: {gpu['skipped']}."]
    out.append("")
    gpu_rows = [r for r in rows if r["device"] == "cuda"]
    if not gpu_rows:
        return out + ["No GPU rows (see failures)."]
    out += ["### Summary (largest size of each op)", ""] + summary_lines(gpu_rows) + [""]
    for fam in _families(gpu_rows):
        out += [f"### GPU {fam}", ""] + family_lines(gpu_rows, fam) + [""]
    return out


def markdown(result):
    """The report as one markdown string."""
    meta = result["meta"]
    rows = result["rows"]
    cpu_rows = [r for r in rows if r["device"] == "cpu"]
    out = ["# fastml benchmark report", "",
           f"`{meta['command']}` — {meta['wall_s']:.0f} s, profile `{meta['profile']['name']}`.",
           ""]
    if cpu_rows:
        out += ["## Summary (CPU, largest size of each op)", ""] + summary_lines(cpu_rows)
        out += ["", "vs *peer*: how many times faster fastml is than the peer (peer median / "
                "fastml median). x floor: fastml's time over the bandwidth floor's. † other "
                "processes used more than a quarter of the CPUs during that case.", ""]
    out += ["## Machine", ""] + _machine_lines(meta) + [""]
    out += ["## Method", ""] + _method_lines(meta) + [""]
    if cpu_rows:
        out += ["## Memory bandwidth (floor kernels, this run)", ""] + bandwidth_lines(cpu_rows)
        out.append("")
        for fam in _families(cpu_rows):
            out += [f"## {fam.capitalize()} (CPU)", ""] + family_lines(cpu_rows, fam) + [""]
    out += ["## Numba compile time", ""] + _compile_lines(result.get("compile")) + [""]
    out += ["## GPU", ""] + _gpu_lines(result.get("gpu", {}), rows) + [""]
    plots = result.get("plots", {})
    out += ["## Plots", ""]
    if plots.get("skipped"):
        out.append(f"Plots skipped: {plots['skipped']}.")
    for name in plots.get("files", []):
        out += [f"![{name}]({name})", ""]
    if result.get("failures"):
        out += ["", "## Failures", ""]
        out += _table(["device", "case", "impl", "error"],
                      [[f["device"], f["case"], f["impl"], f"`{f['error']}`"]
                       for f in result["failures"]])
    if result.get("notes"):
        out += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(out).rstrip() + "\n"


def write_markdown(result, path):
    with open(path, "w") as f:
        f.write(markdown(result))
