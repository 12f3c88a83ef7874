"""Generated models against the authors'-style baseline on a GPU: one short run, a markdown table.

    python -m benchmarks.gpu -o gpu.md          # CUDA: S3 and k36-t12, a few minutes
    python -m benchmarks.gpu --dry-run          # CPU, tiny batches: checks every path runs

For cliquenet-s3 and cliquenet-k36-t12 at batch sizes a GPU user trains with: images/s of a
train step (forward, cross-entropy, backward, SGD step) and of an inference (eval,
``torch.inference_mode``), in float32 and under bfloat16 autocast, channels-last input
(the baseline is converted to channels-last too), eager and ``torch.compile`` (inductor),
generated against baseline; and the peak CUDA memory a train step adds above the model and
its optimizer state, default and ``memory_efficient``.  The baseline is loaded with the
generated model's weights and must compute the same logits before anything is timed.  Figures
are medians of interleaved runs after warm-up; each compiled model's first call (its compile)
is timed on its own.  Compiled runs stop once ``--budget`` seconds have passed, so the whole
run stays under it (they are listed as skipped).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import cliquegen
from cliquegen.analysis.bench import first_calls, median_times
from cliquegen.spec.shipped import apply_overrides

from .baseline import baseline_model

ROOT = Path(__file__).resolve().parent.parent
#: (spec, batch on a GPU, batch of --dry-run)
MODELS = [("specs/imagenet/cliquenet-s3.yaml", 128, 2), ("specs/cifar10/cliquenet-k36-t12.yaml", 256, 4)]
MIB = 2**20


class Runner:
    """Timed steps on one device: synchronised, interleaved medians."""

    def __init__(self, device: torch.device, repeats: int, warmup: int):
        self.device, self.repeats, self.warmup = device, repeats, warmup

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def autocast(self, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None):
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def run() -> None:
            model.train()
            optimizer.zero_grad(set_to_none=True)
            with self.autocast(dtype):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            self.sync()

        return run

    def inference(self, model: nn.Module, x: torch.Tensor, dtype: torch.dtype | None):
        def run() -> None:
            model.eval()
            with torch.inference_mode(), self.autocast(dtype):
                model(x)
            self.sync()

        return run

    def medians(self, runs: dict[str, Callable[[], None]]) -> dict[str, float]:
        """Interleaved medians; every run waits for its device work before it returns."""
        return median_times(runs, repeats=self.repeats, warmup=self.warmup)

    def peak_step_memory(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int | None:
        """Bytes a float32 train step allocates at its peak above what is allocated before it
        (model, gradients and momentum buffers from a first step); None off CUDA."""
        if self.device.type != "cuda":
            return None
        step = self.train_step(model, x, y, None)
        step()  # gradients and momentum buffers exist from here on
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        step()
        return torch.cuda.max_memory_allocated(self.device) - before


def bench_model(
    path: str,
    batch: int,
    runner: Runner,
    compile_backend: str | None,
    deadline: float,
    size: int | None = None,
) -> dict:
    """Every figure of one spec; ``size`` (the dry run's) replaces the spec's image size."""
    device = runner.device
    spec = cliquegen.load_spec(ROOT / path)
    torch.manual_seed(0)
    generated = cliquegen.create_model(spec).to(device)
    lean = cliquegen.create_model(apply_overrides(spec, memory_efficient=True)).to(device)
    lean.load_state_dict(generated.state_dict())
    baseline = baseline_model(spec, {k: v.cpu() for k, v in generated.state_dict().items()})
    baseline = baseline.to(device, memory_format=torch.channels_last)
    shape = (batch, spec.input.channels, size or spec.input.height, size or spec.input.width)
    x = torch.randn(shape, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, spec.num_classes, (batch,), device=device)
    generated.eval()
    baseline.eval()
    with torch.no_grad():
        ours, theirs = generated(x), baseline(x)
    error = ((ours - theirs).norm() / theirs.norm()).item()
    assert error < 1e-3, f"{spec.name}: generated and baseline logits differ (relative {error:.2e})"

    rows: list[dict] = []
    dtypes = {"float32": None, "bf16 autocast": torch.bfloat16}
    for label, dtype in dtypes.items():
        for kind in ("train", "inference"):
            models = {"generated": generated, "baseline": baseline}
            runs = {
                name: runner.train_step(model, x, y, dtype)
                if kind == "train"
                else runner.inference(model, x, dtype)
                for name, model in models.items()
            }
            eager = runner.medians(runs)
            rows.append({"precision": label, "kind": kind, "mode": "eager", **eager})
    if compile_backend is not None:
        for label, dtype in dtypes.items():
            for kind in ("train", "inference"):
                if time.perf_counter() > deadline:
                    rows.append({"precision": label, "kind": kind, "mode": "compiled", "skipped": True})
                    continue
                runs = {}
                for name, model in (("generated", generated), ("baseline", baseline)):
                    compiled = torch.compile(model, backend=compile_backend)
                    runs[name] = (
                        runner.train_step(compiled, x, y, dtype)
                        if kind == "train"
                        else runner.inference(compiled, x, dtype)
                    )
                compile_seconds = first_calls(runs)
                timed = runner.medians(runs)
                rows.append(
                    {
                        "precision": label,
                        "kind": kind,
                        "mode": "compiled",
                        **timed,
                        "compile": compile_seconds,
                    }
                )
                torch._dynamo.reset()  # compiled graphs of this model and mode are not needed again
    memory = {
        "default": runner.peak_step_memory(generated, x, y),
        "memory_efficient": runner.peak_step_memory(lean, x, y),
        "baseline": runner.peak_step_memory(baseline, x, y),
    }
    return {"name": spec.name, "batch": batch, "error": error, "rows": rows, "memory": memory}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "CPU (dry run)"


def report(results: list[dict], device: torch.device, backend: str | None, seconds: float) -> str:
    lines = [
        f"GPU benchmark: {device_name(device)}; torch {torch.__version__}; the run took {seconds:.0f} s "
        f"(`python -m benchmarks.gpu`). Images/s, higher is better; ratio = generated / baseline "
        f"throughput. Channels-last input; compile backend: {backend or 'none'}.",
        "",
        "| model | batch | precision | mode | step | generated img/s | baseline img/s | ratio "
        "| first call (compile): generated | baseline |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for row in r["rows"]:
            head = f"| {r['name']} | {r['batch']} | {row['precision']} | {row['mode']} | {row['kind']} "
            if row.get("skipped"):
                lines.append(head + "| skipped (time budget) | | | | |")
                continue
            ours, theirs = r["batch"] / row["generated"], r["batch"] / row["baseline"]
            compiled = row.get("compile")
            first = f"{compiled['generated']:.1f} s | {compiled['baseline']:.1f} s" if compiled else "- | -"
            lines.append(head + f"| {ours:,.0f} | {theirs:,.0f} | **{ours / theirs:.2f}x** | {first} |")
    lines += [
        "",
        "Peak memory a float32 train step allocates above the model, its gradients and momentum "
        "(`torch.cuda.max_memory_allocated`):",
        "",
        "| model | batch | default | memory_efficient | ratio | baseline |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r["memory"]
        if m["default"] is None:
            lines.append(f"| {r['name']} | {r['batch']} | n/a on CPU | n/a | n/a | n/a |")
            continue
        lines.append(
            f"| {r['name']} | {r['batch']} | {m['default'] / MIB:,.0f} MiB "
            f"| {m['memory_efficient'] / MIB:,.0f} MiB | **{m['memory_efficient'] / m['default']:.2f}x** "
            f"| {m['baseline'] / MIB:,.0f} MiB |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="CPU, tiny batches of 32x32 images, one timed turn, compile with the 'eager' backend: "
        "checks that every path runs, measures nothing",
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed turns per median (default 10)")
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument(
        "--budget", type=float, default=420, help="seconds after which compiled runs are skipped"
    )
    parser.add_argument("-o", "--output", help="also write the table to this file")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.dry_run:
        device, repeats, warmup, backend = torch.device("cpu"), 1, 1, "eager"
    else:
        device, repeats, warmup, backend = torch.device(args.device), args.repeats, 3, "inductor"
        if device.type == "cuda" and not torch.cuda.is_available():
            parser.error("no CUDA device: run on a GPU machine, or --dry-run to check the script on CPU")
        torch.backends.cudnn.benchmark = True
    runner = Runner(device, repeats, warmup)
    results = []
    for path, batch, dry_batch in MODELS:
        result = bench_model(
            path,
            dry_batch if args.dry_run else batch,
            runner,
            None if args.no_compile else backend,
            start + args.budget,
            size=32 if args.dry_run else None,
        )
        results.append(result)
        print(f"{result['name']}: done at {time.perf_counter() - start:.0f} s", flush=True)
    text = report(results, device, None if args.no_compile else backend, time.perf_counter() - start)
    if args.output:
        Path(args.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
