"""torch.compile (inductor) on CPU: generated and baseline, eager and compiled, in one run.

    python -m benchmarks.compiled -o benchmarks/results/compiled.md   # both models, tens of minutes
    python -m benchmarks.compiled --backend eager --batch 2 --repeats 1 -o /tmp/check.md  # a quick check

For each model the generated module and the authors'-style baseline (same weights, the same
logits checked first) are compiled with a fresh, empty cache folder: the first call of a train
step and of an inference is timed (that is the compile), then the steady state of all four
(generated and baseline, eager and compiled) is timed in interleaved turns.  A second, fresh
process then compiles the generated model again from the same cache folder, to show what a
warm cache saves; its cache hits say whether the compiled code was loaded rather than rebuilt.
Last, the compiled generated train step is profiled, so that the table says where its time goes.
``make bench`` copies the markdown this writes into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import cliquegen
from cliquegen.analysis.bench import (
    compile_counters,
    first_calls,
    inference,
    machine,
    median_times,
    self_seconds,
    train_step,
    use_compile_cache,
)

from .baseline import baseline_model

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "cliquenet-s3": ("specs/imagenet/cliquenet-s3.yaml", 4),
    "cliquenet-k36-t12": ("specs/cifar10/cliquenet-k36-t12.yaml", 64),
}
RESULT = ROOT / "benchmarks" / "results" / "compiled.md"


def build(name: str, batch: int) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    path, _ = MODELS[name]
    spec = cliquegen.load_spec(ROOT / path)
    torch.manual_seed(0)
    generated = cliquegen.create_model(spec)
    baseline = baseline_model(spec, generated.state_dict())
    x = torch.randn(batch, spec.input.channels, spec.input.height, spec.input.width)
    return generated, baseline, x


def warm_compile(name: str, batch: int, cache_dir: str, backend: str) -> dict:
    """The generated model's first compiled calls in this (fresh) process, from ``cache_dir``."""
    use_compile_cache(cache_dir)
    generated, _, x = build(name, batch)
    compiled = torch.compile(generated, backend=backend)
    before = compile_counters()
    seconds = first_calls({"train": train_step(compiled, x), "inference": inference(compiled, x)})
    after = compile_counters()
    return {**seconds, "cache": {key: after[key] - before[key] for key in after}}


def profile_shares(run, top: int = 6) -> list[tuple[str, float]]:
    """Share of self CPU time of the top ops of ``run``.  Inductor's own kernels are not
    recorded one by one: what a compiled graph spends outside aten ops is its fused kernels
    (and its Python wrapper), counted as ``inductor's fused kernels``."""
    seconds: dict[str, float] = {}
    for key, value in self_seconds(run, warmup=1).items():
        if key.startswith("## Call CompiledFxGraph"):
            key = "inductor's fused kernels"
        elif not key.startswith("aten::"):
            continue
        seconds[key] = seconds.get(key, 0.0) + value
    total = sum(seconds.values())
    return sorted(((key, value / total) for key, value in seconds.items()), key=lambda item: -item[1])[:top]


def bench(name: str, batch: int, repeats: int, backend: str) -> dict:
    generated, baseline, x = build(name, batch)
    models = {"generated": generated, "baseline": baseline}
    generated.eval()
    baseline.eval()
    with torch.no_grad():
        ours, theirs = generated(x), baseline(x)
    error = ((ours - theirs).norm() / theirs.norm()).item()
    assert error < 1e-4, f"{name}: generated and baseline logits differ (relative {error:.2e})"
    with tempfile.TemporaryDirectory(prefix="cliquegen-inductor-") as cache_dir:
        use_compile_cache(cache_dir)
        compiled = {label: torch.compile(model, backend=backend) for label, model in models.items()}
        before = compile_counters()
        runs = {}
        for label, model in compiled.items():
            runs[f"{label} train"] = train_step(model, x)
            runs[f"{label} inference"] = inference(model, x)
        cold = first_calls(runs)
        after = compile_counters()
        train = median_times(
            {
                "generated": train_step(generated, x),
                "generated compiled": runs["generated train"],
                "baseline": train_step(baseline, x),
                "baseline compiled": runs["baseline train"],
            },
            repeats=repeats,
        )
        infer = median_times(
            {
                "generated": inference(generated, x),
                "generated compiled": runs["generated inference"],
                "baseline": inference(baseline, x),
                "baseline compiled": runs["baseline inference"],
            },
            repeats=repeats,
        )
        shares = profile_shares(runs["generated train"])
        warm = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.compiled",
                "--warm",
                name,
                "--batch",
                str(batch),
                "--cache-dir",
                cache_dir,
                "--backend",
                backend,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    return {
        "name": name,
        "batch": batch,
        "error": error,
        "cold": cold,
        "cold_cache": {key: after[key] - before[key] for key in after},
        "warm": json.loads(warm.stdout.strip().splitlines()[-1]),
        "train": train,
        "inference": infer,
        "shares": shares,
    }


def report(results: list[dict], repeats: int, backend: str, seconds: float) -> str:
    info = machine()
    lines = [
        f"Measured with `python -m benchmarks.compiled` (backend {backend}) on {info['cpu']}, "
        f"{info['cores']} cores, "
        f"{info['threads']} threads, torch {info['torch']}; the run took {seconds / 60:.0f} min. "
        f"Steady state: medians of {repeats} interleaved turns of the four models after two warm-up "
        "turns; first calls: a fresh, empty cache folder (cold), then a fresh process reading that "
        "folder (warm).",
        "",
        "| model | batch | step | generated eager | generated compiled | compiled / eager | baseline eager "
        "| baseline compiled | generated compiled / baseline eager |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for step in ("train", "inference"):
            t = r[step]
            lines.append(
                f"| {r['name']} | {r['batch']} | {step} | {t['generated'] * 1e3:.0f} ms "
                f"| {t['generated compiled'] * 1e3:.0f} ms | {t['generated compiled'] / t['generated']:.2f}x "
                f"| {t['baseline'] * 1e3:.0f} ms | {t['baseline compiled'] * 1e3:.0f} ms "
                f"| **{t['generated compiled'] / t['baseline']:.2f}x** |"
            )
    lines += [
        "",
        "| model | first call | generated, cold cache | baseline, cold cache "
        "| generated, warm cache (new process) |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        for step in ("train", "inference"):
            lines.append(
                f"| {r['name']} | {step} | {r['cold'][f'generated {step}']:.0f} s "
                f"| {r['cold'][f'baseline {step}']:.0f} s | {r['warm'][step]:.1f} s |"
            )
    for r in results:
        cold, warm = r["cold_cache"], r["warm"]["cache"]
        lines += [
            "",
            f"{r['name']}: caches in the cold run: FX graph {cold['fx_graph_hit']} hit(s), "
            f"{cold['fx_graph_miss']} miss(es); in the warm process: FX graph {warm['fx_graph_hit']} hit(s), "
            f"{warm['fx_graph_miss']} miss(es), AOTAutograd {warm['autograd_hit']} hit(s), "
            f"{warm['autograd_miss']} miss(es). Where the compiled generated train step's time goes "
            "(share of self CPU time): "
            + ", ".join(f"`{key}` {share:.0%}" for key, share in r["shares"])
            + ".",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--batch", type=int, help="batch size of every model (default: S3 4, k36-t12 64)")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument(
        "--backend", default="inductor", help="torch.compile backend ('eager' to check the script quickly)"
    )
    parser.add_argument("-o", "--output", default=str(RESULT))
    parser.add_argument(
        "--warm", metavar="MODEL", help=argparse.SUPPRESS
    )  # the fresh process of a warm compile
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warm:
        print(json.dumps(warm_compile(args.warm, args.batch, args.cache_dir, args.backend)))
        return
    start = time.perf_counter()
    results = []
    for name in args.models:
        results.append(bench(name, args.batch or MODELS[name][1], args.repeats, args.backend))
        print(json.dumps(results[-1]), flush=True)
    text = report(results, args.repeats, args.backend, time.perf_counter() - start)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
