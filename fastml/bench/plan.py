"""What ``fastml bench`` runs: the case factories and the sizes and rounds of each profile.

Factories come from :func:`fastml.bench.cases.cases` and
:func:`fastml.bench.optim_cases.cases` (same :class:`~fastml.bench.cases.Case` objects). A factory
is swept over sizes through the size keyword it names: ``n=`` (elements, parameters or samples)
or ``shape=`` (rows x classes); a factory that names neither runs once at its default size.
"""

import inspect
from dataclasses import dataclass, field

# Report section of the cases that do not say it themselves (``Case.family`` empty): by op,
# then by the module the factory came from.
FAMILY_OF_OP = {"clip_grad_norm": "guards", "f1_macro": "metrics"}
FAMILY_OF_SOURCE = {"cases": "losses", "optim_cases": "optimizers"}
FAMILY_ORDER = ("losses", "optimizers", "guards", "metrics")


@dataclass(frozen=True)
class Profile:
    """How much to measure.

    Every timed sample repeats a call until it lasts ``min_sample_s`` (small sizes would
    otherwise measure the clock); an implementation gets ``rounds`` samples, fewer if they would
    take longer than ``impl_budget_s`` (a peer that needs seconds per call), never fewer than
    ``min_rounds``.
    """

    name: str
    rounds: int
    warmup: int
    min_rounds: int
    min_sample_s: float
    impl_budget_s: float
    sizes: dict  # size keyword -> values, for every factory that names the keyword
    op_sizes: dict = field(default_factory=dict)  # op -> {keyword: values}: overrides
    compile_time: bool = True  # measure numba compile time (cold and cached) in subprocesses
    run_unsized: bool = True  # run a factory without a size keyword at its default size
    gpu_sizes: dict = field(default_factory=dict)  # keyword -> values for the GPU cases


_METRICS_SLOW = {"f1_macro": {"n": [100_000, 1_000_000]}}  # scikit-learn takes ~1 s per 1M

PROFILES = {
    "full": Profile(
        "full", rounds=25, warmup=3, min_rounds=3, min_sample_s=2e-3, impl_budget_s=8.0,
        sizes={"n": [10_000, 100_000, 1_000_000, 10_000_000],
               "shape": [(128, 1000), (1024, 1000), (8192, 1000), (1024, 32000)]},
        op_sizes={"f1_macro": {"n": [10_000, 100_000, 1_000_000, 10_000_000]}},
        gpu_sizes={"n": [1_000_000, 16_777_216, 134_217_728],
                   "shape": [(8192, 1000), (8192, 32000)]},
    ),
    "quick": Profile(
        "quick", rounds=7, warmup=2, min_rounds=2, min_sample_s=1e-3, impl_budget_s=1.0,
        sizes={"n": [100_000, 1_000_000, 10_000_000], "shape": [(1024, 1000), (8192, 1000)]},
        op_sizes=_METRICS_SLOW,
        gpu_sizes={"n": [1_000_000, 16_777_216], "shape": [(8192, 1000)]},
    ),
    # For the command's own tests: seconds in all, numbers meaningless.
    "tiny": Profile(
        "tiny", rounds=2, warmup=1, min_rounds=1, min_sample_s=0.0, impl_budget_s=0.2,
        sizes={"n": [1_000, 10_000], "shape": [(16, 100), (64, 100)]},
        compile_time=False, run_unsized=False,
        gpu_sizes={"n": [256], "shape": [(4, 64)]},
    ),
}


@dataclass
class Planned:
    """One case to build: ``factory(**kwargs)``."""

    op: str
    source: str  # "cases" or "optim_cases"
    factory: object
    kwargs: dict

    def family(self, case):
        """The report section of ``case`` built from this plan entry."""
        return (case.family or FAMILY_OF_OP.get(self.op)
                or FAMILY_OF_SOURCE.get(self.source, "other"))

    @property
    def label(self):
        size = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.op} {size}".strip()


def factories():
    """``(sources, notes)``: ``sources`` lists ``(source, {op: factory})``; ``notes`` is empty
    (the GPU run passes its own sources and notes)."""
    from . import cases, optim_cases

    return [("cases", cases.cases()), ("optim_cases", optim_cases.cases())], []


def size_keyword(factory):
    """The size keyword ``factory`` accepts (``"n"`` or ``"shape"``), or None."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    return next((k for k in ("n", "shape") if k in params), None)


def plan(profile, only=None, sizes=None, sources=None):
    """The cases of ``profile`` in run order, and notes on what is left out.

    ``only``: op names to keep (None: all). ``sizes``: keyword -> values, overriding the
    profile's (the GPU run passes ``profile.gpu_sizes``). ``sources``: ``[(source, {op:
    factory})]`` instead of :func:`factories` (the GPU run passes its own).
    """
    sources, notes = factories() if sources is None else (sources, [])
    planned = []
    for source, table in sources:
        for op, factory in table.items():
            if only and op not in only:
                continue
            key = size_keyword(factory)
            values = None
            if key is not None:
                values = (profile.op_sizes.get(op, {}).get(key) if sizes is None else None)
                values = values or (sizes or profile.sizes).get(key)
            if not values:
                if key is None and not profile.run_unsized:
                    notes.append(f"{op}: its factory takes no size keyword (n= or shape=); "
                                 f"left out of profile {profile.name}")
                    continue
                if key is None:
                    notes.append(f"{op}: its factory takes no size keyword (n= or shape=); "
                                 "run once at its default size")
                planned.append(Planned(op, source, factory, {}))
                continue
            planned.extend(Planned(op, source, factory, {key: v}) for v in values)
    return planned, notes
