"""What the benchmark ran on: CPU, cores, memory, OS, library versions, load."""

import datetime
import os
import platform
import sys
from importlib import metadata

PACKAGES = ("fastml", "numba", "llvmlite", "numpy", "torch", "scikit-learn", "numba-cuda",
            "matplotlib")


def _cpuinfo():
    """(model name, physical cores) from /proc/cpuinfo, or (None, None) off Linux."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None, None
    model, cores, phys = None, set(), None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model is None:
            model = value
        elif key == "physical id":
            phys = value
        elif key == "core id":
            cores.add((phys, value))
    return model, (len(cores) or None)


def _ram_gib():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def _version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def load_average():
    """The 1-minute load average, or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def describe():
    """A dict of everything the report's machine section shows."""
    import numba

    from .. import _threading_layer

    model, cores = _cpuinfo()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    versions = {"python": platform.python_version()}
    versions.update({name: _version(name) for name in PACKAGES})
    if versions["fastml"] is None:
        import fastml

        versions["fastml"] = fastml.__version__
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": model or platform.processor() or platform.machine(),
        "physical_cores": cores,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "numba_threads": numba.get_num_threads(),
        # (after numba_threads, which starts numba's pool: its layer is known from then on)
        "threading_layer": _threading_layer.active() or numba.config.THREADING_LAYER,
        "ram_gib": round(_ram_gib(), 1) if _ram_gib() else None,
        "os": platform.platform(),
        "python_impl": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "versions": versions,
    }
