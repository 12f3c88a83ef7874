"""Numeric options: plain ASCII numbers in range, or exit 2 before any work starts."""

from __future__ import annotations

import argparse

import pytest

from cliquegen.cli.args import count, integer, real
from cliquegen.cli.main import main


@pytest.mark.parametrize(
    ("text", "value"), [("1", 1), ("+7", 7), (" 12 ", 12), ("007", 7), ("1000000000", 10**9)]
)
def test_count_accepts_plain_integers(text: str, value: int):
    assert count()(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "must be at least 1, got 0"),
        ("-3", "must be at least 1, got -3"),
        ("1000000001", "must be at most 1,000,000,000, got 1,000,000,001"),
        ("9" * 5000, "is far too large"),
        ("1.5", "expected an integer, got '1.5'"),
        ("1e3", "expected an integer, got '1e3'"),
        ("1_000", "expected an integer, got '1_000'"),
        ("\u0663", "expected an integer, got '\\u0663'"),  # Arabic-Indic three: int() reads it
        ("nan", "expected an integer, got 'nan'"),
        ("", "expected an integer, got ''"),
        ("4\x1b[2J", "expected an integer, got '4\\x1b[2J'"),
    ],
)
def test_count_refuses_what_a_person_does_not_mean(text: str, message: str):
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        count()(text)
    assert message in str(caught.value)


def test_integer_bounds_are_inclusive():
    parse = integer(at_least=0, at_most=1)
    assert (parse("0"), parse("1")) == (0, 1)
    with pytest.raises(argparse.ArgumentTypeError, match="at most 1, got 2"):
        parse("2")


@pytest.mark.parametrize(
    ("text", "value"), [("0.1", 0.1), ("1e-3", 1e-3), (".5", 0.5), ("2.", 2.0), ("3", 3.0)]
)
def test_real_accepts_decimal_numbers(text: str, value: float):
    assert real(above=0)(text) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nan", "expected a finite number such as 0.1, got 'nan'"),
        ("inf", "expected a finite number such as 0.1, got 'inf'"),
        ("-Infinity", "expected a finite number such as 0.1, got '-Infinity'"),
        ("1e999", "expected a finite number, got '1e999'"),
        ("1_0", "expected a finite number such as 0.1, got '1_0'"),
        ("0", "must be greater than 0, got 0"),
        ("-0.1", "must be greater than 0, got -0.1"),
        ("11", "must be at most 10, got 11"),
    ],
)
def test_real_refuses_non_finite_and_out_of_range_values(text: str, message: str):
    with pytest.raises(argparse.ArgumentTypeError) as caught:
        real(above=0, at_most=10)(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "cliquenet-digits", "--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
        (["bench", "cliquenet-digits", "--batch", "-1"], "argument --batch: must be at least 1, got -1"),
        (["bench", "cliquenet-digits", "--batch", "100000"], "argument --batch: must be at most 65,536"),
        (["bench", "cliquenet-digits", "--threads", "0"], "argument --threads: must be at least 1, got 0"),
        (["bench", "cliquenet-digits", "--threads", "nan"], "argument --threads: expected an integer"),
    ],
)
def test_absurd_numeric_options_exit_2_before_any_work(argv, message, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.splitlines()[-1].startswith(f"cliquegen {argv[0]}: error: {message}")
    assert "Traceback" not in err
