"""Deprecated: this module moved to cliquegen.train.sweep; its names still work here for one release, with a
DeprecationWarning."""

from ._deprecated import forward

__getattr__ = forward(
    "cliquegen.sweep",
    {
        "COLUMNS": "cliquegen.train.results",
        "Curve": "cliquegen.train.results",
        "PER_RUN": "cliquegen.train.sweep",
        "RESULTS": "cliquegen.train.results",
        "Run": "cliquegen.train.results",
        "SpecResult": "cliquegen.train.results",
        "SweepConfig": "cliquegen.train.sweep",
        "check": "cliquegen.train.sweep",
        "finished_run": "cliquegen.train.sweep",
        "plot_runs": "cliquegen.train.sweep",
        "read_curves": "cliquegen.train.results",
        "results_csv": "cliquegen.train.results",
        "results_markdown": "cliquegen.train.results",
        "run_folder": "cliquegen.train.sweep",
        "run_state": "cliquegen.train.sweep",
        "sweep": "cliquegen.train.sweep",
        "write_results": "cliquegen.train.sweep",
    },
)
