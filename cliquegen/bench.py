"""Deprecated: this module moved to cliquegen.analysis.bench; its names still work here for one release, with
a DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.bench",
    {
        "CompiledBench": "cliquegen.analysis.bench",
        "SpecBench": "cliquegen.analysis.bench",
        "bench_compiled": "cliquegen.analysis.bench",
        "bench_spec": "cliquegen.analysis.bench",
        "compile_counters": "cliquegen.analysis.bench",
        "first_calls": "cliquegen.analysis.bench",
        "fit_exponent": "cliquegen.analysis.bench",
        "inference": "cliquegen.analysis.bench",
        "machine": "cliquegen.analysis.bench",
        "median_times": "cliquegen.analysis.bench",
        "peak_rss_growth": "cliquegen.analysis.bench",
        "saved_bytes": "cliquegen.analysis.bench",
        "self_seconds": "cliquegen.analysis.bench",
        "train_step": "cliquegen.analysis.bench",
        "use_compile_cache": "cliquegen.analysis.bench",
    },
)
