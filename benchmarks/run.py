"""``make bench``: generated models against the authors'-style baseline; writes BENCHMARKS.md.

Every comparison runs in this one process: the models take turns (interleaved runs), and
each figure is the median of ``--repeats`` runs after two warm-up turns.  The baseline
(benchmarks/baseline.py) is loaded with the generated model's weights and must compute the
same logits before anything is timed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import cliquegen
from cliquegen.analysis.bench import (
    fit_exponent,
    inference,
    machine,
    median_times,
    peak_rss_growth,
    saved_bytes,
    self_seconds,
    train_step,
)
from cliquegen.spec.shipped import apply_overrides

from . import pdasr
from .baseline import baseline_model

ROOT = Path(__file__).resolve().parent.parent
MODELS = [("specs/imagenet/cliquenet-s3.yaml", 4), ("specs/cifar10/cliquenet-k36-t12.yaml", 64)]
MIB = 2**20
#: What the benchmarks that do not run in ``make bench`` last wrote; the report copies them.
COMPILED = ROOT / "benchmarks" / "results" / "compiled.md"
GPU = ROOT / "benchmarks" / "results" / "gpu.md"


def section(path: Path, missing: str) -> list[str]:
    """The lines of a result file, or ``missing`` where there is none."""
    if not path.exists():
        return [missing, ""]
    return [*path.read_text().rstrip("\n").splitlines(), ""]


def compare(path: str, batch: int, repeats: int) -> dict:
    spec = cliquegen.load_spec(ROOT / path)
    torch.manual_seed(0)
    model = cliquegen.create_model(spec)
    lean = cliquegen.create_model(apply_overrides(spec, memory_efficient=True))
    lean.load_state_dict(model.state_dict())
    baseline = baseline_model(spec, model.state_dict())
    x = torch.randn(batch, spec.input.channels, spec.input.height, spec.input.width)
    model.eval()
    baseline.eval()
    with torch.no_grad():  # the same function before any timing
        ours, theirs = model(x), baseline(x)
    error = ((ours - theirs).norm() / theirs.norm()).item()
    assert error < 1e-4, f"{spec.name}: generated and baseline logits differ (relative {error:.2e})"
    train = median_times(
        {"generated": train_step(model, x), "baseline": train_step(baseline, x), "lean": train_step(lean, x)},
        repeats=repeats,
    )
    infer = median_times(
        {"generated": inference(model, x), "baseline": inference(baseline, x)}, repeats=repeats
    )
    threads = torch.get_num_threads()
    return {
        "name": spec.name,
        "batch": batch,
        "error": error,
        "train": train,
        "inference": infer,
        "saved": (saved_bytes(model, x), saved_bytes(lean, x)),
        "rss": tuple(peak_rss_growth(str(ROOT / path), batch, lean, threads) for lean in (False, True)),
    }


#: What each aten op of a step does, for the time breakdown (anything else is "other").
CATEGORIES = {
    "convolution": ("mkldnn_convolution", "convolution_backward", "thnn_conv2d", "_slow_conv2d_backward"),
    "BatchNorm": ("native_batch_norm", "native_batch_norm_backward", "_native_batch_norm_legit", "addcmul"),
    "ReLU": ("relu", "relu_", "clamp_min", "clamp_min_", "threshold_backward"),
    "concatenation": ("cat",),
    "gradient sums": ("add", "add_"),
    "copies": ("copy_",),
}


def time_by_category(path: str, batch: int) -> dict[str, dict[str, dict[str, float]]]:
    """Seconds per call of each op category (aten self CPU time, torch.profiler, 2 calls after 2
    warm-up calls) in a train step and an inference, generated and baseline."""
    spec = cliquegen.load_spec(ROOT / path)
    torch.manual_seed(0)
    model = cliquegen.create_model(spec)
    models = {"generated": model, "baseline": baseline_model(spec, model.state_dict())}
    x = torch.randn(batch, spec.input.channels, spec.input.height, spec.input.width)
    kind = {op: category for category, ops in CATEGORIES.items() for op in ops}
    breakdown: dict[str, dict[str, dict[str, float]]] = {}
    for step, make in (("train step", train_step), ("inference", inference)):
        for name, net in models.items():
            seconds = dict.fromkeys([*CATEGORIES, "other"], 0.0)
            for key, value in self_seconds(make(net, x)).items():
                if key.startswith("aten::"):
                    seconds[kind.get(key[6:], "other")] += value
            breakdown.setdefault(step, {})[name] = seconds
    return breakdown


def synthetic(layers: int, stages: int) -> str:
    """YAML of a 3-block CIFAR spec with ``layers`` layers per block and ``stages`` stages."""
    return (
        f"name: scale-n{layers}-s{stages}\nnum_classes: 10\n"
        f"defaults: {{schedule: {{stages: {stages}}}, feature: [x0, {stages}], transit: {stages}}}\n"
        f"blocks:\n" + f"  - {{layers: {layers}, channels: 8}}\n" * 3
    )


def compile_times(repeats: int) -> list[dict]:
    rows = []
    for layers, stages in [(4, 2), (8, 2), (16, 2), (32, 2), (16, 3), (16, 4)]:
        text = synthetic(layers, stages)
        times = median_times(
            {
                "build_fx": lambda text=text: cliquegen.build_fx(cliquegen.load_spec(text)),
                "generate_source": lambda text=text: cliquegen.generate_source(text),
            },
            repeats=repeats,
            warmup=1,
        )
        updates = 3 * layers * stages
        rows.append({"layers": layers, "stages": stages, "updates": updates, **times})
    return rows


def s3_build(repeats: int) -> dict[str, float]:
    path = ROOT / "specs/imagenet/cliquenet-s3.yaml"
    return median_times(
        {
            "build_fx": lambda: cliquegen.build_fx(cliquegen.load_spec(path)),
            "generate_source": lambda: cliquegen.generate_source(path),
        },
        repeats=repeats,
        warmup=1,
    )


def report(
    results: list[dict], scaling: list[dict], s3: dict[str, float], breakdown: dict, seconds: float
) -> str:
    info = machine()
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (benchmarks/run.py); `cliquegen bench SPEC` times any spec.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores; torch {info['torch']}, "
        f"{info['threads']} threads; Python {info['python']}. The whole run took {seconds:.0f} s.",
        "",
        "Generated = `cliquegen.create_model(spec)` (FX; the generated source runs the same "
        "steps), plain NCHW float32 input, CPU. Baseline = benchmarks/baseline.py, the "
        "authors' module structure (`conv_param` ModuleList of (n+1)^2 convs, `forward_bn`/"
        "`loop_bn`, inputs and weights concatenated with torch.cat on every forward, "
        "BN -> ReLU -> conv per update) loaded with the same weights; the logits agree "
        "(relative difference below) before anything is timed. Medians of interleaved runs "
        "in one process, after two warm-up turns.",
        "",
        "## Train step (forward + backward) and inference",
        "",
        "| model | batch | train: generated | baseline | ratio | inference: generated | baseline | ratio "
        "| logits rel. diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t, i = r["train"], r["inference"]
        lines.append(
            f"| {r['name']} | {r['batch']} | {t['generated'] * 1e3:.0f} ms | {t['baseline'] * 1e3:.0f} ms "
            f"| **{t['generated'] / t['baseline']:.2f}x** | {i['generated'] * 1e3:.0f} ms "
            f"| {i['baseline'] * 1e3:.0f} ms | **{i['generated'] / i['baseline']:.2f}x** | {r['error']:.1e} |"
        )
    s3r = results[0]
    train_ratio = s3r["train"]["generated"] / s3r["train"]["baseline"]
    infer_ratio = s3r["inference"]["generated"] / s3r["inference"]["baseline"]
    lean_memory = max(r["rss"][1] / r["rss"][0] for r in results)
    lean_time = max(r["train"]["lean"] / r["train"]["generated"] for r in results)

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    lines += [
        "",
        "Targets (cliquenet-s3, batch 4): train step <= 0.75x the baseline: "
        f"{train_ratio:.2f}x, {verdict(train_ratio <= 0.75)}; inference <= 0.65x: {infer_ratio:.2f}x, "
        f"{verdict(infer_ratio <= 0.65)}; `build_fx` < 300 ms: {s3['build_fx'] * 1e3:.0f} ms, "
        f"{verdict(s3['build_fx'] < 0.3)}; memory_efficient, on both models: <= 0.6x the activation "
        f"memory at <= 1.3x the time: at most {lean_memory:.2f}x at {lean_time:.2f}x, "
        f"{verdict(lean_memory <= 0.6 and lean_time <= 1.3)}.",
        "",
        "What the speed-up is: channels-last memory from the first op (how much oneDNN's "
        "convolutions gain from it depends on the CPU: from about nothing to 1.5-2x), ReLU in "
        "place after BatchNorm, and in inference (eval, autograd off) an update's BatchNorm "
        "applied as its running statistics' per-channel x * scale + shift, writing each input "
        "straight into its channels of one new tensor, so the concatenation is no separate pass "
        "(exact). What limits it: the convolutions, the same ones the baseline runs (same "
        "weights, same FLOPs). The table below splits both models' time by what the ops do "
        "(aten self CPU time per call, torch.profiler; the sums come close to the medians "
        "above). The floor is what the generated model would take if everything but its "
        "convolutions took no time; the rest (BatchNorm, ReLU, the concatenations, the sums of "
        "gradients of a value read by several updates) is memory traffic the update structure "
        "needs: every update normalises the concatenation of its inputs with its own BatchNorm, "
        "so neither can be shared between updates, and BatchNorm comes before the ReLU and the "
        "convolution, so it cannot be folded into a convolution's weights.",
        "",
        f"cliquenet-s3, batch {MODELS[0][1]}, ms per call:",
        "",
        "| op | train step: generated | baseline | inference: generated | baseline |",
        "|---|---|---|---|---|",
    ]
    train_parts, infer_parts = breakdown["train step"], breakdown["inference"]
    for category in train_parts["generated"]:
        cells = [parts[name][category] * 1e3 for parts in (train_parts, infer_parts) for name in parts]
        lines.append(f"| {category} | " + " | ".join(f"{ms:.0f}" for ms in cells) + " |")
    lines.append(
        "| all | "
        + " | ".join(
            f"{sum(parts[name].values()) * 1e3:.0f}" for parts in breakdown.values() for name in parts
        )
        + " |"
    )

    def floor(parts: dict[str, dict[str, float]], step: str, categories: tuple[str, ...]) -> float:
        return sum(parts["generated"][c] for c in categories) / s3r[step]["baseline"]

    conv, norm = ("convolution",), ("convolution", "BatchNorm", "ReLU")
    lines += [
        "",
        "Floors, the generated model's own time of some ops / the baseline's median: its "
        f"convolutions alone, train step {floor(train_parts, 'train', conv):.2f}x, inference "
        f"{floor(infer_parts, 'inference', conv):.2f}x; its convolutions, BatchNorm and ReLU, which "
        f"every update runs on its own inputs, train step {floor(train_parts, 'train', norm):.2f}x, "
        f"inference {floor(infer_parts, 'inference', norm):.2f}x. Where the second floor is above a "
        "target, these eager kernels cannot meet it: only fusing BatchNorm and ReLU into fewer "
        "passes could, which is what torch.compile does (below). Not tried: a preallocated Stage I buffer "
        "(a channel slice of a channels-last buffer is not contiguous, so BatchNorm and the "
        "convolution would copy it again), and pooling before the transitions' 1x1 convolutions "
        "(exact only without transition dropout, and with attention only on even sizes; it would "
        "run fewer FLOPs than the network the paper counts, so the FLOPs `cliquegen summary` "
        "reports would no longer be the ones the model runs).",
    ]
    lines += [
        "",
        "## Activation memory of a training step: default vs `memory_efficient`",
        "",
        "Peak RSS growth: how far one forward + backward raises the resident memory of a fresh "
        "process above what the model, its preallocated gradients and the input hold (Linux "
        "`VmHWM`; the honest total, checkpoint inputs and backward temporaries included). "
        "Saved for backward: distinct storages autograd saves "
        "(`torch.autograd.graph.saved_tensors_hooks`), which does not see what a checkpoint "
        "keeps, so it only shows that recomputation is active. Each RSS figure is the median of "
        "3 fresh processes run with glibc's mmap threshold fixed at 64 KiB "
        "(`MALLOC_MMAP_THRESHOLD_=65536`), so that large tensors are mapped and unmapped one by "
        "one and resident memory follows the live tensors, not what the heap kept from earlier "
        "frees; with it, repeated processes agree to within 1 MiB (without it they differed by "
        "up to 50 MiB and the S3 ratio moved between 0.58x and 0.65x).",
        "",
        "| model | batch | peak RSS growth: default | memory_efficient | ratio | saved: default "
        "| memory_efficient | train time ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        (rd, rl), (sd, sl), t = r["rss"], r["saved"], r["train"]
        lines.append(
            f"| {r['name']} | {r['batch']} | {rd / MIB:.0f} MiB | {rl / MIB:.0f} MiB | **{rl / rd:.2f}x** "
            f"| {sd / MIB:.0f} MiB | {sl / MIB:.0f} MiB | **{t['lean'] / t['generated']:.2f}x** |"
        )
    lines += [
        "",
        "## torch.compile (inductor), CPU",
        "",
        "`cliquegen bench SPEC --compile [--cache-dir DIR]` times any spec's compiled model beside "
        "its eager one (first calls, which compile, and interleaved steady-state medians) and counts "
        "hits of inductor's FX graph cache and AOTAutograd's cache, which are on and kept on disk "
        "(`--cache-dir`, else `TORCHINDUCTOR_CACHE_DIR` or torch's folder under the temporary "
        "folder), so a second process loads the compiled code instead of building it again; "
        "`cliquegen train --compile` trains the compiled model. `make bench` does not compile (on "
        "2 cores one inductor compile of these models takes minutes); "
        "`python -m benchmarks.compiled` compiles both models and the baseline in one run and "
        f"writes {COMPILED.relative_to(ROOT)}, copied here:",
        "",
        *section(COMPILED, "Not measured yet."),
        "What it shows: inductor leaves the convolutions to oneDNN (the `aten::` convolution ops "
        "in the profiles) and fuses what is around them, BatchNorm, ReLU and the concatenations, "
        "into its own kernels. On 2 CPU cores those are most of what the generated eager model "
        "already does well, so compiling buys little: a few percent to about 10% in inference, "
        "nothing or a loss in a train step, and it does not take the generated model to the "
        "targets above. What compiling costs is the first call; with the on-disk caches a new "
        "process pays a few seconds instead of minutes.",
        "",
        "## GPU",
        "",
        "`python -m benchmarks.gpu -o benchmarks/results/gpu.md` (one run, under 8 minutes on a "
        "current GPU; compiled runs stop at `--budget`, 420 s) times cliquenet-s3 (batch 128) and "
        "cliquenet-k36-t12 (batch 256) against the baseline: images/s of a train step "
        "(cross-entropy, backward, SGD) and of an inference, float32 and bf16 autocast, "
        "channels-last, eager and compiled, and the peak CUDA memory of a train step, default and "
        "`memory_efficient`; `python -m benchmarks.gpu --dry-run` checks every path of the script "
        "on CPU with tiny batches (it measures nothing). Its last result, copied here:",
        "",
        *section(GPU, "Not measured yet: no GPU machine has run it."),
        "## Compile time",
        "",
        f"cliquenet-s3: `load_spec` + `build_fx` {s3['build_fx'] * 1e3:.0f} ms, "
        f"`generate_source` {s3['generate_source'] * 1e3:.0f} ms.",
        "",
        "Synthetic specs of 3 blocks (k = 8), `layers` per block and `stages` stages:",
        "",
        "| layers | stages | updates | load_spec + build_fx | generate_source |",
        "|---|---|---|---|---|",
    ]
    for row in scaling:
        lines.append(
            f"| {row['layers']} | {row['stages']} | {row['updates']} | {row['build_fx'] * 1e3:.0f} ms "
            f"| {row['generate_source'] * 1e3:.0f} ms |"
        )
    by_layers = [row for row in scaling if row["stages"] == 2]
    by_stages = [row for row in scaling if row["layers"] == 16]
    for key in ("build_fx", "generate_source"):
        n_exp = fit_exponent([r["layers"] for r in by_layers], [r[key] for r in by_layers])
        s_exp = fit_exponent([r["stages"] for r in by_stages], [r[key] for r in by_stages])
        lines.append("")
        lines.append(
            f"`{key}`: time ~ layers^{n_exp:.2f} (stages 2, layers 4..32) and ~ stages^{s_exp:.2f} "
            "(16 layers, stages 2..4), log-log least squares. An update of layer j reads n-1 "
            "tensors, so a block has O(n^2 * stages) edges: the bound is n^2 * stages."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=8)  # even: each side runs first equally often
    parser.add_argument("-o", "--output", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    start = time.perf_counter()
    results = [compare(path, batch, args.repeats) for path, batch in MODELS]
    scaling = compile_times(args.repeats)
    s3 = s3_build(args.repeats)
    breakdown = time_by_category(*MODELS[0])
    refiner = pdasr.section(repeats=args.repeats)
    text = report(results, scaling, s3, breakdown, time.perf_counter() - start) + "\n" + "\n".join(refiner)
    Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
