"""The flat layout's module paths still work for one release: each old name is the new object,
and using it warns."""

import importlib
import warnings

import pytest

import cliquegen

OLD_MODULES = [
    "cliquegen.analyze",
    "cliquegen.bench",
    "cliquegen.checkpoint",
    "cliquegen.data",
    "cliquegen.evaluate",
    "cliquegen.export",
    "cliquegen.figures",
    "cliquegen.ir",
    "cliquegen.loader",
    "cliquegen.lower",
    "cliquegen.naming",
    "cliquegen.recipes",
    "cliquegen.registry",
    "cliquegen.render",
    "cliquegen.schema",
    "cliquegen.spec",
    "cliquegen.summary",
    "cliquegen.sweep",
    "cliquegen.train",
    "cliquegen.weights",
]


def moved_names(old: str) -> dict[str, str]:
    return importlib.import_module(old).__getattr__.moved


@pytest.mark.parametrize("old", OLD_MODULES)
def test_old_names_forward_to_their_new_home_with_a_warning(old):
    module = importlib.import_module(old)
    assert moved_names(old)
    for name, home in moved_names(old).items():
        with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} has moved to {home}"):
            value = getattr(module, name)
        assert value is getattr(importlib.import_module(home), name), f"{old}.{name}"


@pytest.mark.parametrize("old", OLD_MODULES)
def test_names_that_never_existed_are_still_attribute_errors(old):
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = importlib.import_module(old).no_such_name


def test_new_paths_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        importlib.import_module("cliquegen.spec.shipped").resolve_spec("cliquenet-k36-t12")
        assert cliquegen.resolve_spec is importlib.import_module("cliquegen.spec.shipped").resolve_spec


def test_the_render_module_stays_callable_as_the_drawing_function():
    importlib.import_module("cliquegen.render")
    dot = cliquegen.render("cliquenet-k36-t12", view="block")
    assert dot == importlib.import_module("cliquegen.draw.views").render("cliquenet-k36-t12", view="block")
    assert "digraph" in dot
