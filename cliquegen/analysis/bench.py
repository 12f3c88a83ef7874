"""Timing and memory of generated models: ``cliquegen bench SPEC`` and ``make bench``.

Times are medians of interleaved runs in one process after warm-up runs (models measured
side by side take turns, so a slow moment of the machine hits all of them alike).
Activation memory is measured two ways, both deterministic for a given model and batch:

- ``saved_bytes``: bytes of the distinct storages autograd saves for the backward pass
  (``torch.autograd.graph.saved_tensors_hooks``); it does not see what a checkpoint keeps
  (its inputs), so it only shows that recomputation is active;
- ``peak_rss``: growth of the peak resident memory of a fresh process over one training
  step (forward + backward), after a first step has allocated parameters and gradients:
  everything the step holds, checkpoint inputs included.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..emit.build import generate_source
from ..models import build_fx, create_model
from ..spec.loader import load_spec
from ..spec.shipped import apply_overrides, resolve_spec


def median_times(
    runs: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 2
) -> dict[str, float]:
    """Median seconds of each callable, run in turns after ``warmup`` turns.

    Each turn starts one place further along (a b c, b c a, c a b, ...): whichever runs first
    after another's work finds the caches and the allocator in a different state, and a fixed
    order would hand that to the same callable every time.
    """
    names = list(runs)
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for turn in range(repeats):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def first_calls(runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Seconds of each callable's first call, in order (for a compiled model: its compile)."""
    seconds = {}
    for name, run in runs.items():
        start = time.perf_counter()
        run()
        seconds[name] = time.perf_counter() - start
    return seconds


def self_seconds(run: Callable[[], object], calls: int = 2, warmup: int = 2) -> dict[str, float]:
    """Self CPU seconds per call of every op ``run`` records in torch.profiler (aten ops,
    compiled graphs' wrappers, ...), over ``calls`` calls after ``warmup``."""
    from torch.profiler import profile

    for _ in range(warmup):
        run()
    with profile() as prof:
        for _ in range(calls):
            run()
    return {event.key: event.self_cpu_time_total / 1e6 / calls for event in prof.key_averages()}


def train_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    """Forward + backward of a summed output in training mode (no optimizer)."""

    def run() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()

    return run


def inference(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """An eval-mode forward under ``torch.inference_mode``."""

    def run() -> object:
        model.eval()
        with torch.inference_mode():
            return model(x)

    return run


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd saves in one training forward."""
    storages: dict[tuple[int, int], int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
        return tensor

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = model(x)
    params = {(p.untyped_storage().data_ptr(), p.untyped_storage().nbytes()) for p in model.parameters()}
    del out
    return sum(size for key, size in storages.items() if key not in params)


_RSS_SCRIPT = """
import json, resource, sys, torch
from cliquegen.registry import apply_overrides, create_model, resolve_spec
torch.set_num_threads(int(sys.argv[4]))
torch.manual_seed(0)
spec = apply_overrides(resolve_spec(sys.argv[1]), memory_efficient=sys.argv[3] == "1")
model = create_model(spec, emit=sys.argv[5]).train()
x = torch.randn(int(sys.argv[2]), spec.input.channels, spec.input.height, spec.input.width)
for p in model.parameters():
    p.grad = torch.zeros_like(p)  # gradients are not activations
with open("/proc/self/statm") as statm:
    before = int(statm.read().split()[1]) * resource.getpagesize()
model(x).sum().backward()
with open("/proc/self/status") as status:  # VmHWM: this image's peak (ru_maxrss survives exec)
    after = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) * 1024
print(json.dumps({"growth": after - before}))
"""


def peak_rss_growth(
    spec: str, batch: int, memory_efficient: bool, threads: int = 1, emit: str = "fx", samples: int = 3
) -> int:
    """Bytes by which one training step (forward + backward) raises the resident memory of a
    fresh process above what the model, its gradients and the input hold (Linux only).

    The median of ``samples`` processes, each with glibc's mmap threshold fixed at 64 KiB:
    large tensors are then mapped and unmapped one by one, so resident memory follows the
    live tensors instead of whatever the allocator's heap kept from earlier frees.
    """
    args = [spec, str(batch), "1" if memory_efficient else "0", str(threads), emit]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    growths = []
    for _ in range(samples):
        result = subprocess.run(
            [sys.executable, "-c", _RSS_SCRIPT, *args], capture_output=True, text=True, check=True, env=env
        )
        growths.append(json.loads(result.stdout.strip().splitlines()[-1])["growth"])
    return int(statistics.median(growths))


def fit_exponent(sizes: list[float], seconds: list[float]) -> float:
    """Slope of log(seconds) against log(size), least squares: t ~ size**slope."""
    xs, ys = [math.log(s) for s in sizes], [math.log(t) for t in seconds]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


@dataclass
class CompiledBench:
    """``cliquegen bench --compile``'s figures: ``torch.compile`` (inductor) beside eager.

    ``compile_*``: seconds of the first call, which compiles (a train step and an inference
    are two graphs); ``train``/``inference``: steady-state medians of the compiled model,
    taken in turns with the eager model's; ``cache``: hits and misses of inductor's FX graph
    cache and AOTAutograd's cache in this process (hits: a process compiled these graphs
    before, so only tracing is paid again); ``cache_dir``: where those caches are kept.
    """

    compile_train: float
    compile_inference: float
    train: float
    inference: float
    eager_train: float
    eager_inference: float
    cache: dict[str, int]
    cache_dir: str


def compile_counters() -> dict[str, int]:
    """Cache hits and misses of inductor's FX graph cache and AOTAutograd's cache so far."""
    from torch._dynamo.utils import counters

    return {
        "fx_graph_hit": counters["inductor"]["fxgraph_cache_hit"],
        "fx_graph_miss": counters["inductor"]["fxgraph_cache_miss"],
        "autograd_hit": counters["aot_autograd"]["autograd_cache_hit"],
        "autograd_miss": counters["aot_autograd"]["autograd_cache_miss"],
    }


def use_compile_cache(cache_dir: str | os.PathLike[str] | None = None) -> str:
    """Turn on inductor's on-disk caches (FX graph and AOTAutograd, on by default in this
    torch) and keep them in ``cache_dir`` (default: torch's, ``TORCHINDUCTOR_CACHE_DIR`` or a
    folder under the system's temporary folder); return the folder used."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import cache_dir as inductor_cache_dir

    if cache_dir is not None:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.abspath(os.fspath(cache_dir))
    inductor_config.fx_graph_cache = True
    functorch_config.enable_autograd_cache = True
    return inductor_cache_dir()


def bench_compiled(
    model: nn.Module, x: torch.Tensor, repeats: int, cache_dir: str | None = None, backend: str = "inductor"
) -> CompiledBench:
    """Compile ``model`` (inductor unless ``backend`` says otherwise), time its first calls,
    then its steady state beside the eager model (interleaved medians)."""
    used = use_compile_cache(cache_dir)
    before = compile_counters()
    compiled = torch.compile(model, backend=backend)
    runs = {"train": train_step(compiled, x), "inference": inference(compiled, x)}
    first = first_calls(runs)
    after = compile_counters()
    times = median_times(
        {
            "eager_train": train_step(model, x),
            "train": runs["train"],
            "eager_inference": inference(model, x),
            "inference": runs["inference"],
        },
        repeats=repeats,
    )
    return CompiledBench(
        compile_train=first["train"],
        compile_inference=first["inference"],
        train=times["train"],
        inference=times["inference"],
        eager_train=times["eager_train"],
        eager_inference=times["eager_inference"],
        cache={key: after[key] - before[key] for key in after},
        cache_dir=used,
    )


@dataclass
class SpecBench:
    """``cliquegen bench SPEC``'s figures (seconds, bytes)."""

    name: str
    batch: int
    threads: int
    build_fx: float
    generate_source: float
    train: float
    inference: float
    train_memory_efficient: float
    saved_bytes: int
    saved_bytes_memory_efficient: int
    peak_rss_growth: int | None
    peak_rss_growth_memory_efficient: int | None
    compiled: CompiledBench | None = None

    def lines(self) -> list[str]:
        mib = 2**20

        def rss(value: int | None) -> str:
            return "not measured" if value is None else f"{value / mib:.1f} MiB"

        lines = [
            f"{self.name}: batch {self.batch}, {self.threads} thread(s), torch {torch.__version__}",
            f"  build_fx            {self.build_fx * 1e3:9.1f} ms (load_spec + build_fx)",
            f"  generate_source     {self.generate_source * 1e3:9.1f} ms",
            f"  train step          {self.train * 1e3:9.1f} ms (forward + backward, median)",
            f"  train step, lean    {self.train_memory_efficient * 1e3:9.1f} ms (memory_efficient,"
            f" {self.train_memory_efficient / self.train:.2f}x)",
            f"  inference           {self.inference * 1e3:9.1f} ms (eval, inference_mode, median)",
            f"  saved for backward  {self.saved_bytes / mib:9.1f} MiB; memory_efficient "
            f"{self.saved_bytes_memory_efficient / mib:.1f} MiB (checkpoint inputs not counted)",
            f"  peak RSS growth of a step {rss(self.peak_rss_growth)}; memory_efficient "
            f"{rss(self.peak_rss_growth_memory_efficient)}",
        ]
        c = self.compiled
        if c is not None:
            cache = c.cache
            lines += [
                f"  torch.compile (inductor), first calls: train step {c.compile_train:.1f} s, inference "
                f"{c.compile_inference:.1f} s",
                f"    caches: FX graph {cache['fx_graph_hit']} hit(s), {cache['fx_graph_miss']} miss(es); "
                f"AOTAutograd {cache['autograd_hit']} hit(s), {cache['autograd_miss']} miss(es)",
                f"    in {c.cache_dir}",
                f"  train step, compiled {c.train * 1e3:9.1f} ms ({c.train / c.eager_train:.2f}x eager "
                f"{c.eager_train * 1e3:.1f} ms)",
                f"  inference, compiled  {c.inference * 1e3:9.1f} ms "
                f"({c.inference / c.eager_inference:.2f}x eager {c.eager_inference * 1e3:.1f} ms)",
            ]
        return lines


def bench_spec(
    spec_ref: str,
    batch: int = 4,
    repeats: int = 5,
    emit: str = "fx",
    rss: bool = True,
    compile: bool = False,
    cache_dir: str | None = None,
) -> SpecBench:
    """Time and measure the generated model of a spec (a path or a shipped name); with
    ``compile``, its ``torch.compile`` twin too (:func:`bench_compiled`)."""

    spec = resolve_spec(spec_ref)
    path = spec_ref if os.path.exists(spec_ref) else None
    builds = median_times(
        {
            "build_fx": lambda: build_fx(load_spec(path) if path else spec),
            "generate_source": lambda: generate_source(path or spec),
        },
        repeats=repeats,
        warmup=1,
    )
    torch.manual_seed(0)
    model = create_model(spec, emit=emit)
    lean = create_model(apply_overrides(spec, memory_efficient=True), emit=emit)
    lean.load_state_dict(model.state_dict())
    x = torch.randn(batch, spec.input.channels, spec.input.height, spec.input.width)
    times = median_times(
        {"train": train_step(model, x), "lean": train_step(lean, x), "inference": inference(model, x)},
        repeats=repeats,
    )
    threads = torch.get_num_threads()
    return SpecBench(
        name=spec.name,
        batch=batch,
        threads=threads,
        build_fx=builds["build_fx"],
        generate_source=builds["generate_source"],
        train=times["train"],
        inference=times["inference"],
        train_memory_efficient=times["lean"],
        saved_bytes=saved_bytes(model, x),
        saved_bytes_memory_efficient=saved_bytes(lean, x),
        peak_rss_growth=peak_rss_growth(spec_ref, batch, False, threads, emit) if rss else None,
        peak_rss_growth_memory_efficient=peak_rss_growth(spec_ref, batch, True, threads, emit)
        if rss
        else None,
        compiled=bench_compiled(model, x, repeats, cache_dir) if compile else None,
    )
