"""``import cliquegen`` stays light: graphviz, jinja2 and matplotlib load when first used."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("graphviz", "jinja2", "matplotlib")


def loaded_after(code: str) -> list[str]:
    """The heavy modules in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"import sys, json\n{code}\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, encoding="utf-8", check=True)
    return json.loads(out.stdout.splitlines()[-1])


def test_import_cliquegen_loads_no_drawing_or_template_library() -> None:
    assert loaded_after("import cliquegen") == []


@pytest.mark.parametrize(
    ("code", "loaded"),
    [
        ("import cliquegen; cliquegen.create_model('cliquenet-k36-t12')", []),
        ("import cliquegen; print(cliquegen.render('cliquenet-k36-t12'))", ["graphviz"]),
        ("from cliquegen import render", ["graphviz"]),
        ("import cliquegen.draw; cliquegen.draw.draw('cliquenet-k36-t12')", ["graphviz"]),
        ("import cliquegen.draw.figure, cliquegen.train.figures, cliquegen.analysis.figures", []),
        (
            "import cliquegen as c; c.generate_source(c.resolve_spec('cliquenet-k36-t12'))",
            ["jinja2"],
        ),
        ("import cliquegen; cliquegen.create_model('cliquenet-k36-t12', emit='source')", ["jinja2"]),
    ],
)
def test_each_library_loads_when_first_used(code: str, loaded: list[str]) -> None:
    assert loaded_after(code) == loaded


def test_lazy_names_are_the_objects_of_their_modules() -> None:
    import cliquegen
    import cliquegen.draw
    from cliquegen.draw import views

    assert {"render", "generate_source", "build_source_model"} <= set(dir(cliquegen))
    for name in ("generate_source", "build_source_model"):  # the emitter's own functions
        value = getattr(cliquegen, name)
        assert value is getattr(cliquegen.emit, name) is getattr(sys.modules[value.__module__], name)
        assert value.__module__.startswith("cliquegen.emit.")
    for name in cliquegen.draw.__all__:
        assert getattr(cliquegen.draw, name) is getattr(views, name), name
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = cliquegen.no_such_name
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = cliquegen.draw.no_such_name
