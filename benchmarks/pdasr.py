"""PDASR's refiner: the generated model against a straightforward implementation of their
structure, side by side, with the same weights.

The baseline is tests/pdasr_reference.py: their modules (``nn.Sequential(conv, PReLU)`` per
update, a ``torch.cat`` per update, their Haar transforms, ``.mul(res_scale)`` on every block
output, the frozen mean-shift convs) re-stated from their code.  Our model gets its weights
through ``import-weights --format pdasr`` (:func:`convert_from_pdasr`), and both must give the
same image before anything is timed.  ``make bench`` runs :func:`section` on the CPU;
``python -m benchmarks.pdasr --device cuda`` times a GPU (TF32 off on both sides, so that
their outputs can be compared at float32 precision).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import cliquegen
from cliquegen.analysis.bench import inference, machine, median_times, train_step
from cliquegen.interop.pdasr import convert_from_pdasr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from pdasr_reference import pdasr_refiner  # noqa: E402 (the oracle lives with the tests)

#: (their template, our spec, batch, image side)
CASES = [
    ("Clique", "specs/sr/pdasr-clique.yaml", 2, 64),
    ("light_Clique-", "specs/sr/pdasr-clique-light.yaml", 2, 64),
]


def compare(template: str, path: str, batch: int, side: int, repeats: int, device: str) -> dict:
    torch.manual_seed(0)
    theirs = pdasr_refiner(template).to(device)
    spec = cliquegen.load_spec(ROOT / path)
    ours = cliquegen.create_model(spec).to(device)
    ours.load_state_dict(convert_from_pdasr(theirs.state_dict(), spec).state_dict)
    x = 255 * torch.rand(batch, 3, side, side, device=device)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a, b = ours(x), theirs(x)
    error = ((a - b).abs().max() / b.abs().max()).item()
    assert error < 1e-5, f"{spec.name}: generated and baseline images differ (relative {error:.2e})"
    infer = median_times({"generated": inference(ours, x), "baseline": inference(theirs, x)}, repeats=repeats)
    ours.train(), theirs.train()
    train = median_times(
        {"generated": train_step(ours, x), "baseline": train_step(theirs, x)}, repeats=repeats
    )
    return {
        "name": spec.name,
        "batch": batch,
        "side": side,
        "error": error,
        "train": train,
        "inference": infer,
    }


def section(repeats: int = 6, device: str = "cpu") -> list[str]:
    """The report's section: a row per template."""
    rows = [compare(*case, repeats, device) for case in CASES]
    lines = [
        "## PDASR's refiner against their structure",
        "",
        'Generated = `create_model("pdasr-clique")` with their weights imported (`--format pdasr`); '
        "baseline = tests/pdasr_reference.py, their modules and forward re-stated (a "
        "`Sequential(conv, PReLU)` and a `torch.cat` per update, `.mul(res_scale)` on every "
        f"block output, frozen mean-shift convs). Images in [0, 255], {device}; medians of "
        "interleaved runs. Target: at most 1.0x the baseline's time.",
        "",
        "| spec | batch x side | train: generated | baseline | ratio | inference: generated | baseline "
        "| ratio | output rel. diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, i = r["train"], r["inference"]
        lines.append(
            f"| {r['name']} | {r['batch']} x {r['side']}² | {t['generated'] * 1e3:.0f} ms "
            f"| {t['baseline'] * 1e3:.0f} ms | **{t['generated'] / t['baseline']:.2f}x** "
            f"| {i['generated'] * 1e3:.0f} ms | {i['baseline'] * 1e3:.0f} ms "
            f"| **{i['generated'] / i['baseline']:.2f}x** | {r['error']:.1e} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("-o", "--output", default=str(ROOT / "benchmarks" / "results" / "pdasr.md"))
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        torch.backends.cudnn.conv.fp32_precision = "ieee"  # no TF32: both sides in float32
    info = machine()
    head = [f"Machine: {info['cpu']}, torch {info['torch']}, {info['threads']} threads.", ""]
    lines = section(args.repeats, args.device)
    text = "\n".join([*lines[:2], *head, *lines[2:]])
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
