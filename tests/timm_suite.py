"""Run timm's own model tests on the cliquegen models registered with timm.

    python tests/timm_suite.py build/timm-sdist/timm-1.0.31 [pytest arguments]

The folder is timm's unpacked source distribution (``make timm-suite`` fetches it); its
``tests/test_models.py`` runs unmodified, against the timm package of that same folder, so the
tests and the library they test are one release.  Only the cliquegen models take part:

- ``timm.list_models`` and ``timm.list_pretrained``, with which the test module chooses its
  model names when it is imported, return only cliquegen's names (those whose entry point
  lives in the cliquegen package).  A ``module=`` filter also takes cliquegen's module: the
  test module uses one only for the models that implement ``forward_intermediates`` and
  ``prune_intermediate_layers`` (its ``FEAT_INTER_FILTERS``), as cliquegen's models do.
- Tests that take no cliquegen name (those written for named timm models) are deselected.

``TIMM_SUITE_MODELS`` narrows the names further: fnmatch patterns separated by spaces or
commas (``TIMM_SUITE_MODELS="cliquenet_digits cliquenet_k36_t12"``).  ``TIMM_SUITE_EMIT=source``
tests the models of generated source instead of the FX ones (the default, ``fx``): the
``timm.create_model`` the tests call passes ``emit="source"`` to cliquegen's entry points.

Where torchvision cannot be imported, timm is imported beside the tests' torchvision stand-in
(``torchvision_stand_in``) without ``torchvision.models.feature_extraction``: timm and its tests
then see no FX feature extraction, as without torchvision, and its FX tests skip.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
USAGE = "usage: python tests/timm_suite.py TIMM_SDIST_FOLDER [pytest arguments]"


def fail(message: str) -> None:
    print(f"timm_suite: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def import_timm(sdist: Path) -> tuple[Any, list[str]]:
    """timm from ``sdist`` with cliquegen's models registered, and the stand-in modules put in
    ``sys.modules`` (none where the real torchvision imports)."""
    sys.path.insert(0, str(HERE))
    import torchvision_stand_in

    installed = torchvision_stand_in.install()
    if installed:
        sys.modules["torchvision.models.feature_extraction"] = None  # an ImportError, as without torchvision
    sys.path.insert(0, str(sdist))  # this release's timm, not another one installed
    import timm

    import cliquegen  # noqa: F401  (registers its models with the timm imported)

    if Path(timm.__file__).resolve().parent != (sdist / "timm").resolve():
        fail(f"timm was imported from {timm.__file__}, not from {sdist}")
    return timm, installed


def cliquegen_names(timm: Any) -> list[str]:
    """The timm names whose entry point belongs to cliquegen, narrowed by TIMM_SUITE_MODELS."""
    names = [
        name
        for name in timm.list_models()
        if timm.models.model_entrypoint(name).__module__.split(".")[0] == "cliquegen"
    ]
    if not names:
        fail("timm lists no cliquegen model (was cliquegen imported before timm finished importing?)")
    patterns = [p for p in re.split(r"[\s,]+", os.environ.get("TIMM_SUITE_MODELS", "")) if p]
    if patterns:
        unmatched = [p for p in patterns if not fnmatch.filter(names, p)]
        if unmatched:
            fail(f"TIMM_SUITE_MODELS: {', '.join(unmatched)} match no cliquegen model; they are {names}")
        names = [name for name in names if any(fnmatch.fnmatch(name, p) for p in patterns)]
    return names


def narrowed(
    real: Callable[..., list[str]], names: Iterable[str], modules: Iterable[str] = ()
) -> Callable[..., list[str]]:
    """``real`` (``list_models`` or ``list_pretrained``) returning only ``names``, with ``modules``
    added to any ``module=`` filter; tagged names (``name.tag``) count by their name."""
    names, modules = set(names), list(modules)
    signature = inspect.signature(real)

    @functools.wraps(real)
    def listing(*args: Any, **kwargs: Any) -> list[str]:
        bound = signature.bind(*args, **kwargs)
        module = bound.arguments.get("module")
        if module:
            bound.arguments["module"] = [module, *modules] if isinstance(module, str) else [*module, *modules]
        return [name for name in real(*bound.args, **bound.kwargs) if name.split(".")[0] in names]

    return listing


def with_emitter(create_model: Callable[..., Any], names: Iterable[str], emit: str) -> Callable[..., Any]:
    """timm's ``create_model`` passing ``emit=emit`` for the named models unless the call gives one."""
    names = set(names)

    @functools.wraps(create_model)
    def create(model_name: str, *args: Any, **kwargs: Any) -> Any:
        if model_name.split(".")[0] in names:
            kwargs.setdefault("emit", emit)
        return create_model(model_name, *args, **kwargs)

    return create


class CliquegenOnly:
    """The pytest plugin: reports what runs, and deselects the tests of other models."""

    def __init__(self, timm: Any, names: list[str], emit: str, stand_in: bool):
        self.timm, self.names, self.emit, self.stand_in = timm, set(names), emit, stand_in

    def pytest_configure(self, config: pytest.Config) -> None:
        if not config.pluginmanager.hasplugin("timeout"):  # timm's limits need pytest-timeout
            config.addinivalue_line("markers", "timeout(seconds): pytest-timeout's limit, not enforced here")

    def pytest_report_header(self) -> list[str]:
        torchvision = (
            "a stand-in (no FX feature extraction: the FX tests skip)" if self.stand_in else "the real one"
        )
        where = Path(self.timm.__file__).parent
        return [
            f"timm {self.timm.__version__} from {where}; torchvision: {torchvision}",
            f"cliquegen models ({len(self.names)}, emit={self.emit}): {' '.join(sorted(self.names))}",
        ]

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        kept, deselected = [], []
        for item in items:
            callspec = getattr(item, "callspec", None)
            name = callspec.params.get("model_name") if callspec else None
            ours = isinstance(name, str) and name.split(".")[0] in self.names
            (kept if ours else deselected).append(item)
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = kept


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        fail(USAGE)
    sdist, pytest_args = Path(argv[0]), argv[1:]
    test_file = sdist / "tests" / "test_models.py"
    if not test_file.is_file():
        fail(f"{test_file} does not exist; `make timm-suite` fetches timm's source distribution")
    emit = os.environ.get("TIMM_SUITE_EMIT") or "fx"
    if emit not in ("fx", "source"):
        fail(f"TIMM_SUITE_EMIT={emit!r}: choose fx or source")
    timm, installed = import_timm(sdist)
    names = cliquegen_names(timm)
    modules = {timm.models.model_entrypoint(name).__module__.rsplit(".", 1)[-1] for name in names}
    # the test module reads these from `timm` as it is imported, during collection
    timm.list_models = narrowed(timm.list_models, names, sorted(modules))
    timm.list_pretrained = narrowed(timm.list_pretrained, names)
    if emit != "fx":
        timm.create_model = with_emitter(timm.create_model, names, emit)
    plugin = CliquegenOnly(timm, names, emit, stand_in=bool(installed))
    return int(pytest.main([str(test_file), *pytest_args], plugins=[plugin]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
