"""Writes are all or nothing, interruptions leave nothing behind, OS errors are one line.

Each case runs the real command: in-process through ``main`` (signals sent to this process),
or in a fresh interpreter where it needs a closed stream or a full disk.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cliquegen import _io
from cliquegen.cli.main import main
from cliquegen.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
TINY = "name: tiny-{n}\nnum_classes: 10\nblocks:\n  - {{layers: 2, channels: 4}}\n"


def _specs(folder: Path, count: int) -> list[str]:
    paths = []
    for n in range(count):
        path = folder / f"tiny-{n}.yaml"
        path.write_text(TINY.format(n=n), encoding="utf-8")
        paths.append(str(path))
    return paths


def _cli(*argv: str, stdout=subprocess.PIPE, cwd: Path = ROOT, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "cliquegen", *argv],
        cwd=cwd,
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=180,
        **kwargs,
    )


def _one_clear_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# --- build A B: all or nothing -------------------------------------------------------------------


@pytest.mark.parametrize("obstacle", ["folder", "foreign-file"])
def test_build_leaves_nothing_of_a_when_b_cannot_be_written(tmp_path: Path, capsys, obstacle: str):
    a, b = _specs(tmp_path, 2)
    out = tmp_path / "out"
    out.mkdir()
    if obstacle == "folder":
        (out / "tiny_1.py").mkdir()
        expected = f"cliquegen: error: cannot write {out.resolve() / 'tiny_1.py'}: it exists and is not a "
    else:
        (out / "tiny_1.py").write_text("# my own notes\n", encoding="utf-8")
        expected = (
            f"cliquegen: error: refusing to overwrite {out.resolve() / 'tiny_1.py'}: cliquegen did not "
        )
    assert main(["build", a, b, "-o", str(out)]) == 2
    assert capsys.readouterr().err.startswith(expected)
    assert sorted(p.name for p in out.iterdir()) == ["tiny_1.py"]


def test_build_removes_the_folder_it_made_when_a_write_fails(tmp_path: Path, capsys, monkeypatch):
    a, b = _specs(tmp_path, 2)
    out = tmp_path / "new" / "out"
    real_replace = os.replace
    calls = []

    def fail_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(_io.os, "replace", fail_second)
    assert main(["build", a, b, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert _one_clear_line(err).endswith(": No space left on device")
    assert not (tmp_path / "new").exists()  # the first module was renamed into place, then undone


def test_a_failed_rename_restores_the_files_already_replaced(tmp_path: Path, monkeypatch):
    old, new = tmp_path / "old.txt", tmp_path / "new.txt"
    old.write_text("before\n", encoding="utf-8")
    real_replace = os.replace

    def fail_on_new(src, dst):
        if Path(dst) == new.resolve():
            raise OSError(5, "Input/output error", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(_io.os, "replace", fail_on_new)
    with pytest.raises(UsageError, match="Input/output error"):
        _io.atomic_write_all([(old, "after\n"), (new, "fresh\n")], root=tmp_path)
    assert old.read_text(encoding="utf-8") == "before\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.txt"]


def test_atomic_write_all_writes_every_file(tmp_path: Path):
    (tmp_path / "a").write_text("old", encoding="utf-8")
    _io.atomic_write_all([(tmp_path / "a", "A"), (tmp_path / "b", b"B")], root=tmp_path)
    assert (tmp_path / "a").read_text() == "A" and (tmp_path / "b").read_text() == "B"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
    with pytest.raises(UsageError, match="same file"):
        _io.atomic_write_all([(tmp_path / "a", "1"), (tmp_path / "." / "a", "2")], root=tmp_path)


# --- signals ------------------------------------------------------------------------------------


@pytest.fixture
def signal_during_write(monkeypatch: pytest.MonkeyPatch):
    """Send a signal to this process at the moment a temporary file exists (inside the fsync
    before the rename), the worst place to be stopped; returns the setter."""

    def arm(name: str) -> None:
        real = _io._finish

        def finish(tmp: Path) -> None:
            os.kill(os.getpid(), getattr(signal, name))
            real(tmp)

        monkeypatch.setattr(_io, "_finish", finish)

    return arm


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_during_build_leaves_no_file(tmp_path: Path, capsys, signal_during_write, name: str):
    specs = _specs(tmp_path, 2)
    out = tmp_path / "out"
    signal_during_write(name)
    assert main(["build", *specs, "-o", str(out)]) == 128 + getattr(signal, name)
    err = capsys.readouterr().err
    assert _one_clear_line(err) == f"cliquegen: stopped by {name}; no output was left half-written"
    assert not out.exists()


def test_a_signal_during_train_leaves_no_temporary_file(tmp_path: Path, capsys, signal_during_write):
    out = tmp_path / "run"
    argv = [
        "train",
        "cliquenet-digits",
        "--data",
        "digits",
        "--epochs",
        "1",
        "--subset",
        "16",
        "--out",
        str(out),
    ]
    signal_during_write("SIGTERM")
    assert main(argv) == 128 + signal.SIGTERM
    assert "Traceback" not in capsys.readouterr().err
    assert not [p.name for p in out.rglob("*") if ".tmp" in p.name]


def test_signals_raise_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with _io.signals_raise():
        assert signal.getsignal(signal.SIGTERM) is not before
        with pytest.raises(_io.Interrupted) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0) if hasattr(signal, "sigtimedwait") else None
        assert caught.value.exit_status == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


# --- operating-system errors: exit 2, one line ----------------------------------------------------


@pytest.mark.parametrize("command", [["schema"], ["summary", "cliquenet-digits", "--json"], ["list"]])
def test_standard_output_closed_before_the_end_of_the_output(command):
    """`cliquegen schema | head -c 1`: the reader has gone when the output is written, which is
    normal for `head`: the command ends quietly (print() and rich's tables alike)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    reader, writer = os.pipe()
    os.close(reader)  # no reader: every write to the pipe fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cliquegen", *command], cwd=ROOT, env=env, stdout=writer,
            stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr) == (0, "")


def test_standard_output_closed_from_the_start():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "cliquegen", "list"], cwd=ROOT, env=env, stderr=subprocess.PIPE,
        text=True, timeout=120, close_fds=True, preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert done.returncode == 2
    assert _one_clear_line(done.stderr) == "cliquegen: error: standard output is closed; nothing was done"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_on_standard_output():
    with open("/dev/full", "w") as full:
        done = _cli("summary", "cliquenet-digits", stdout=full)
    assert done.returncode == 2
    assert (
        _one_clear_line(done.stderr) == "cliquegen: error: cannot write the output: No space left on device"
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_while_writing_a_file(tmp_path: Path, capsys, monkeypatch):
    def full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    target = tmp_path / "block.dot"
    assert main(["render", "cliquenet-digits", "-o", str(target)]) == 2
    assert _one_clear_line(capsys.readouterr().err) == (
        f"cliquegen: error: cannot write {target}: No space left on device"
    )
    assert list(tmp_path.iterdir()) == []


def test_output_under_a_regular_file(tmp_path: Path, capsys):
    plain = tmp_path / "notes.txt"
    plain.write_text("x", encoding="utf-8")
    assert main(["render", "cliquenet-digits", "-o", str(plain / "block.dot")]) == 2
    assert _one_clear_line(capsys.readouterr().err) == (
        f"cliquegen: error: cannot write {plain / 'block.dot'}: {plain} is a file, not a folder"
    )
    spec = _specs(tmp_path, 1)[0]
    assert main(["build", spec, "-o", str(plain / "out")]) == 2
    assert _one_clear_line(capsys.readouterr().err) == (
        f"cliquegen: error: cannot make the folder {plain / 'out'}: {plain} is a file, not a folder"
    )
    assert plain.read_text(encoding="utf-8") == "x"


def test_a_dangling_symlink_and_a_symlink_loop(tmp_path: Path, capsys):
    dangling = tmp_path / "block.dot"
    dangling.symlink_to(tmp_path / "missing" / "block.dot")
    assert main(["render", "cliquenet-digits", "-o", str(dangling)]) == 2
    assert _one_clear_line(capsys.readouterr().err) == (
        f"cliquegen: error: cannot write {dangling}: the folder {tmp_path / 'missing'} does not exist"
    )
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(loop)
    assert main(["render", "cliquenet-digits", "-o", str(loop)]) == 2
    assert _one_clear_line(capsys.readouterr().err).startswith(f"cliquegen: error: cannot write {loop}: ")


def test_an_unreadable_spec_is_one_line(tmp_path: Path, capsys):
    spec = tmp_path / "secret.yaml"
    spec.write_text(TINY.format(n=0), encoding="utf-8")
    spec.chmod(0)
    if os.access(spec, os.R_OK):
        pytest.skip("running as root: every file is readable")
    assert main(["validate", str(spec)]) == 2
    assert (
        _one_clear_line(capsys.readouterr().err) == f"{spec}: error: cannot read the spec: Permission denied"
    )


# --- messages: control characters escaped, look-alike names told apart -----------------------------


def test_control_characters_in_file_names_are_escaped(tmp_path: Path, capsys):
    spec = tmp_path / "evil\x1b[2J\x07.yaml"
    spec.write_text("name: tiny\n", encoding="utf-8")
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert err.startswith(f"{tmp_path}/evil\\x1b[2J\\x07.yaml:1:1: error: missing required key")
    assert main(["summary", str(tmp_path / "gone\x1b]0;title\x07.yaml")]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "gone\\x1b]0;title\\x07.yaml" in err


def test_control_characters_in_usage_errors_are_escaped(capsys):
    assert main(["summary", "cliquenet\x1b[31m"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "cliquenet\\x1b[31m" in err


def test_look_alike_keys_are_told_apart(tmp_path: Path, capsys):
    spec = tmp_path / "homoglyph.yaml"
    spec.write_text(
        "name: tiny\nnum_classes: 10\nblocks:\n  - {lay\u0435rs: 3, channels: 8}\n", encoding="utf-8"
    )
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert (
        "unknown key `lay\u0435rs` (\u0435 is U+0435 CYRILLIC SMALL LETTER IE); did you mean `layers`?" in err
    )


def test_look_alike_model_names_are_told_apart(capsys):
    assert main(["summary", "cliquen\u0435t-s0"]) == 2
    err = capsys.readouterr().err
    assert "Unknown model 'cliquen\u0435t-s0' (\u0435 is U+0435 CYRILLIC SMALL LETTER IE)." in err
    assert "Did you mean 'cliquenet-s0'" in err


def test_invisible_characters_in_values_are_shown(tmp_path: Path, capsys):
    spec = tmp_path / "zwsp.yaml"
    spec.write_text(
        "name: tiny\u200b\nnum_classes: 10\nblocks:\n  - {layers: 3, channels: 8}\n", encoding="utf-8"
    )
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "\u200b" not in err
    assert "the string 'tiny\\u200b' (\\u200b is U+200B ZERO WIDTH SPACE)" in err


# --- validate a folder ------------------------------------------------------------------------------


def test_validate_a_folder_checks_every_spec_under_it_sorted(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs" / "b").mkdir(parents=True)
    (tmp_path / "specs" / "b" / "z.yaml").write_text(TINY.format(n=1), encoding="utf-8")
    (tmp_path / "specs" / "a.YML").write_text(TINY.format(n=2), encoding="utf-8")
    (tmp_path / "specs" / "b" / "bad.yaml").write_text("name: tiny\n", encoding="utf-8")
    (tmp_path / "specs" / "notes.txt").write_text("not a spec", encoding="utf-8")
    assert main(["validate", "specs/"]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines() == ["specs/a.YML: ok (tiny-2)", "specs/b/z.yaml: ok (tiny-1)"]
    assert err.startswith("specs/b/bad.yaml:1:1: error: missing required key `num_classes`")


def test_validate_the_shipped_specs_folder(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["validate", "specs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    shipped = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").rglob("*.yaml"))
    assert [line.split(": ok")[0] for line in lines] == shipped


def test_validate_an_empty_folder(tmp_path: Path, capsys):
    assert main(["validate", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"{tmp_path}: error: no spec (*.yaml, *.yml) in this folder\n"
