"""The ``cliquegen`` command line.  Exit status: 0 ok, 2 bad input, 1 internal error."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import __version__
from ._args import count, integer, real
from ._io import Interrupted, signals_raise
from ._limits import check_limits, lifted
from .errors import CliqueGenError, SpecError, os_error_message, printable
from .loader import load_spec, spec_files
from .lower import compile_spec
from .recipes import RECIPES
from .registry import family, resolve_spec, shipped_specs
from .render import FORMATS
from .schema import spec_schema
from .spec import Spec
from .summary import Summary, summarize

EXIT_OK, EXIT_USAGE = 0, 2  # an internal error is an uncaught exception: Python exits with 1

# Tables keep their full width when printed to a file or a pipe (rich assumes 80 columns there).
_stdout = Console(
    highlight=False, soft_wrap=True, width=None if sys.stdout is not None and sys.stdout.isatty() else 160
)


def _millions(n: int) -> str:
    return f"{n / 1e6:.3f}M"


def _giga(n: int) -> str:
    return f"{n / 1e9:.3f}G"


def _summary_table(summary: Summary) -> Table:
    table = Table(title=f"{summary.name}: {_millions(summary.params)} params, {_giga(summary.flops)} FLOPs")
    for column in ("part", "output", "params", "MACs", "FLOPs"):
        table.add_column(column, justify="left" if column in ("part", "output") else "right")
    for part in summary.parts:
        shape = "x".join(map(str, part.output))
        table.add_row(part.part, shape, f"{part.params:,}", f"{part.macs:,}", _giga(part.flops))
    table.add_section()
    table.add_row("total", "", f"{summary.params:,}", f"{summary.macs:,}", _giga(summary.flops))
    return table


def _checked_spec(name_or_path: str) -> Spec:
    """resolve_spec, then the resource limits (lifted by --force), reported at the spec file."""
    spec = resolve_spec(name_or_path)
    check_limits(spec, path=name_or_path)
    return spec


def cmd_validate(args: argparse.Namespace) -> int:
    diagnostics = []
    for path in spec_files(args.specs):
        try:
            spec = load_spec(Path(path), path=path)
            check_limits(spec, path=path)
        except SpecError as error:
            diagnostics += error.diagnostics
        else:
            _stdout.print(f"{printable(path)}: ok ({spec.name})", markup=False)
    if diagnostics:
        raise SpecError(diagnostics)
    return EXIT_OK


def cmd_summary(args: argparse.Namespace) -> int:
    summary = summarize(compile_spec(_checked_spec(args.spec)))
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        _stdout.print(_summary_table(summary))
    return EXIT_OK


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it lies inside it (shorter to read)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for name, path in sorted(shipped_specs().items(), key=lambda item: (family(item[0]), item[0])):
        summary = summarize(compile_spec(load_spec(path)))
        rows.append(
            {
                "name": name,
                "family": family(name),
                "path": _shown(path),
                "params": summary.params,
                "flops": summary.flops,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    table = Table(title="shipped specs")
    for column in ("family", "name", "params", "FLOPs", "path"):
        table.add_column(column, justify="right" if column in ("params", "FLOPs") else "left")
    for index, row in enumerate(rows):
        first = index == 0 or rows[index - 1]["family"] != row["family"]
        if first and index:
            table.add_section()
        shown = row["family"] if first else ""
        table.add_row(shown, row["name"], _millions(row["params"]), _giga(row["flops"]), row["path"])
    _stdout.print(table)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(spec_schema(), indent=2))
    return EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    from .emit.source import build_files

    diagnostics = []  # every spec's problems, including its size, before anything is written
    for path in args.specs:
        try:
            check_limits(load_spec(Path(path), path=path), path=path)
        except SpecError as error:
            diagnostics += error.diagnostics
    if diagnostics:
        raise SpecError(diagnostics)
    for path, compiled in build_files(args.specs, args.output, force=args.force):
        summary = summarize(compiled)
        _stdout.print(f"wrote {path}: {_millions(summary.params)} params, {_giga(summary.flops)} FLOPs")
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    from ._io import atomic_write
    from .errors import UsageError
    from .render import output_format, render

    fmt = output_format(args.output, args.format)
    if fmt not in ("dot", "svg") and args.output is None:
        raise UsageError(f"{fmt.upper()} output is binary: give the file to write with -o FILE")
    data = render(_checked_spec(args.spec), args.view, block=args.block, depth=args.depth, format=fmt)
    if args.output is None:
        sys.stdout.write(data)
        return EXIT_OK
    atomic_write(args.output, data)
    _stdout.print(f"wrote {args.output} ({args.view} view, {fmt})")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, run

    _checked_spec(args.spec)
    options = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    run(TrainConfig(**options), console=_stdout)
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    _checked_spec(args.spec)
    result = evaluate(
        args.spec, args.weights, args.data, batch_size=args.batch_size, workers=args.workers,
        device=args.device, subset=args.subset,
    )  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _stdout.print(
            f"{result['spec']} on {result['data']} ({result['images']:,} test images): "
            f"top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%  loss {result['loss']:.4f}"
        )
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from .evaluate import predict

    _checked_spec(args.spec)
    results = predict(args.spec, args.weights, args.images, top_k=args.top_k, device=args.device)
    if args.json:
        print(json.dumps(results, indent=2))
        return EXIT_OK
    for result in results:
        ranked = ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in result["top"])
        _stdout.print(f"{result['image']}: {ranked}", markup=False)
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import SweepConfig, sweep

    for spec in args.specs:
        _checked_spec(spec)
    sweep(SweepConfig.from_args(vars(args)), console=_stdout)
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    from .sweep import plot_runs

    _stdout.print(f"wrote {plot_runs(args.runs, args.output)}")
    return EXIT_OK


def cmd_analyze_weights(args: argparse.Namespace) -> int:
    from .analyze import analyze_weights

    _checked_spec(args.spec)
    matrices, path = analyze_weights(args.spec, args.weights, args.block, args.output, args.json)
    _report_analysis({"blocks": [m.to_json() for m in matrices]}, path, args.json)
    return EXIT_OK


def cmd_analyze_features(args: argparse.Namespace) -> int:
    from .analyze import analyze_features

    _checked_spec(args.spec)
    options = {k: getattr(args, k) for k in ("image", "sample", "block", "output", "json", "mean", "std")}
    maps, path = analyze_features(args.spec, args.weights, **options)
    _report_analysis(maps.to_json(), path, args.json)
    return EXIT_OK


def _report_analysis(numbers: dict, path: Path | None, as_json: bool) -> None:
    if as_json:
        print(json.dumps(numbers, indent=2))
    if path is not None:  # to stderr when stdout carries JSON
        print(f"wrote {path}", file=sys.stderr if as_json else sys.stdout)


def cmd_export(args: argparse.Namespace) -> int:
    from .export import NOTES, export_model

    _checked_spec(args.spec)
    path = export_model(args.spec, args.format, args.output, weights=args.weights)
    _stdout.print(f"wrote {path} ({args.format}, {path.stat().st_size:,} bytes)")
    if args.format in NOTES:
        print(NOTES[args.format], file=sys.stderr)
    return EXIT_OK


def cmd_import_weights(args: argparse.Namespace) -> int:
    from . import weights

    spec = _checked_spec(args.spec)
    conversion = weights.IMPORTERS[args.format](weights.load_weights_file(args.source), spec)
    weights.check_loads(conversion.state_dict, spec)
    weights.save_weights_file(conversion.state_dict, args.output)
    notes = [f"ignored the unused {key}" for key in conversion.ignored]
    if conversion.filled:
        notes.append(f"set {len(conversion.filled)} missing num_batches_tracked to 0")
    _stdout.print(
        f"wrote {args.output}: {len(conversion.state_dict)} tensors for {spec.name}"
        + "".join(f"\n  {note}" for note in notes)
    )
    return EXIT_OK


def cmd_export_weights(args: argparse.Namespace) -> int:
    from . import weights

    spec = _checked_spec(args.spec)
    checkpoint = weights.EXPORTERS[args.to](weights.load_weights_file(args.source), spec)
    weights.save_weights_file(checkpoint, args.output)
    _stdout.print(f"wrote {args.output}: {args.to} checkpoint of {spec.name}")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from .bench import bench_spec

    _checked_spec(args.spec)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_spec(
        args.spec,
        args.batch,
        args.repeats,
        args.emit,
        rss=not args.no_rss,
        compile=args.compile,
        cache_dir=args.cache_dir,
    )
    if args.json:
        print(json.dumps(dataclasses.asdict(result), indent=2))
    else:
        _stdout.print("\n".join(result.lines()))
    return EXIT_OK


_FORCE_HELP = (
    "build even a spec over the size limits (2e9 parameters, memory, 1e6 graph edges), "
    "and replace output files that cliquegen did not write"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cliquegen", description="Compile declarative CliqueNet specs into PyTorch models."
    )
    parser.add_argument("--version", action="version", version=f"cliquegen {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], help: str, force: bool = True
    ) -> argparse.ArgumentParser:
        """A subcommand; every one that compiles a spec takes --force."""
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        if force:
            sub.add_argument("--force", action="store_true", help=_FORCE_HELP)
        return sub

    sub = add("build", cmd_build, "write each spec's model as a standalone Python module")
    sub.add_argument("specs", nargs="+", metavar="SPEC")
    sub.add_argument("-o", "--output", default="generated", metavar="DIR", help="folder (default: generated)")
    sub = add("validate", cmd_validate, "check specs; errors as PATH:LINE:COL: error: MESSAGE")
    sub.add_argument("specs", nargs="+", metavar="SPEC", help="a spec file, or a folder: every spec under it")
    sub = add("summary", cmd_summary, "parameters, MACs and FLOPs, per block")
    sub.add_argument("spec", metavar="SPEC", help="spec path or shipped spec name")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub = add("list", cmd_list, "the shipped specs with their sizes", force=False)
    sub.add_argument("--json", action="store_true", help="print a JSON list")
    add("schema", cmd_schema, "print the JSON Schema of the spec format", force=False)
    sub = add("render", cmd_render, "draw a block, its stage schedule or the network with graphviz")
    sub.add_argument("spec", metavar="SPEC", help="spec path or shipped spec name")
    sub.add_argument("--view", choices=["block", "schedule", "network"], default="block")
    sub.add_argument("--block", type=int, metavar="N", help="block and schedule views: block to draw, from 1")
    sub.add_argument("--depth", type=int, metavar="D", help="network view: 1 expands the blocks")
    sub.add_argument("--format", choices=FORMATS, help="default: from -o's suffix (any case), else dot")
    sub.add_argument("-o", "--output", metavar="FILE", help="file to write (default: standard output)")
    sub = add("train", cmd_train, "train a spec with the authors' recipe; also under torchrun (DDP)")
    sub.add_argument("spec", metavar="SPEC", help="spec path or shipped spec name")
    sub.add_argument("--out", required=True, metavar="DIR", help="checkpoints, metrics and curves go here")
    _training_options(sub)
    sub.add_argument("--seed", type=integer(at_least=0), default=0)
    sub.add_argument("--resume", action="store_true", help="continue exactly from DIR/last.pt")
    sub.add_argument("--stop-after", type=count(), metavar="E", help="stop after epoch E; --resume later")
    sub = add("eval", cmd_eval, "top-1, top-5 and loss of trained weights on a data set's test split")
    sub.add_argument("spec", metavar="SPEC", help="spec path or shipped spec name")
    sub.add_argument("--weights", required=True, metavar="W.pt", help="best.pt, last.pt or a state_dict")
    sub.add_argument("--data", required=True, help="as for train")
    sub.add_argument("--batch-size", type=count(at_most=65536), default=256)
    sub.add_argument("--workers", type=integer(at_least=0, at_most=1024), default=0)
    sub.add_argument("--subset", type=count(), metavar="N", help="only the first N test images")
    sub.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub = add("predict", cmd_predict, "the most likely classes of images, with the checkpoint's class names")
    sub.add_argument("spec", metavar="SPEC", help="spec path or shipped spec name")
    sub.add_argument("--weights", required=True, metavar="W.pt", help="best.pt or last.pt of a run")
    sub.add_argument("images", nargs="+", metavar="IMAGE")
    sub.add_argument("--top-k", type=count(at_most=1000), default=5, metavar="K")
    sub.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    sub.add_argument("--json", action="store_true", help="print a JSON list")
    sub = add("sweep", cmd_sweep, "train specs x seeds with one recipe; results table and figure")
    sub.add_argument("specs", nargs="+", metavar="SPEC", help="spec paths or shipped spec names")
    sub.add_argument("--out", required=True, metavar="DIR", help="OUT/<spec>/seed<S>/ and OUT/results.*")
    sub.add_argument(
        "--seeds", type=integer(at_least=0), nargs="+", default=[0], metavar="S", help="default: 0"
    )
    _training_options(sub)
    sub = add("plot", cmd_plot, "overlay the training curves of runs (their metrics.json)", force=False)
    sub.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders that `cliquegen train` wrote")
    sub.add_argument("-o", "--output", required=True, metavar="FIG", help=".png, .svg or .pdf")
    analyze = add("analyze", None, "look inside a trained model: weight strengths, feature maps", False)
    kinds = analyze.add_subparsers(dest="kind", required=True, metavar="KIND")
    sub = _analysis(kinds, "weights", cmd_analyze_weights, "heatmaps of each block's mean |W_ij|")
    sub.add_argument("--block", type=count(), metavar="N", help="only block N, from 1 (default: all)")
    sub = _analysis(
        kinds, "features", cmd_analyze_features, "a block's feature maps, Stage I against the last stage"
    )
    source = sub.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", metavar="IMG", help="a PNG or JPEG file, resized to the spec's input")
    source.add_argument("--sample", metavar="DATA:INDEX", help="a test image of a data set, e.g. digits:5")
    sub.add_argument(
        "--block", type=count(), default=1, metavar="N", help="block to show, from 1 (default 1)"
    )
    sub.add_argument("--mean", type=real(), nargs="+", help="--image: channel means (default: the run's)")
    sub.add_argument(
        "--std", type=real(above=0), nargs="+", help="--image: channel stds (default: the run's)"
    )
    sub = add("export", cmd_export, "export a spec's model (ONNX, torch.export, TorchScript) or its weights")
    sub.add_argument("spec", metavar="SPEC", help="spec path or shipped spec name")
    sub.add_argument("--weights", metavar="W.pt", help="state_dict or checkpoint (last.pt, best.pt)")
    formats = ["onnx", "exported-program", "torchscript", "safetensors"]
    sub.add_argument("--format", required=True, choices=formats, help="safetensors: the weights alone")
    sub.add_argument("-o", "--output", required=True, metavar="FILE")
    sub = add("bench", cmd_bench, "time a spec's model: train step, inference, build; activation memory")
    sub.add_argument("spec", metavar="SPEC", help="spec path or shipped spec name")
    sub.add_argument("--batch", type=count(at_most=65536), default=4, help="batch size (default 4)")
    sub.add_argument(
        "--repeats", type=count(at_most=10_000), default=5, help="timed runs per median (default 5)"
    )
    sub.add_argument("--threads", type=count(at_most=4096), help="torch threads (default: torch's)")
    sub.add_argument("--emit", choices=["fx", "source"], default="fx")
    sub.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    sub.add_argument(
        "--compile", action="store_true", help="also time torch.compile (inductor): first calls, medians"
    )
    sub.add_argument("--cache-dir", metavar="DIR", help="inductor's compile caches (default: torch's)")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub = add("import-weights", cmd_import_weights, "convert the authors' or torchvision's weights")
    sub.add_argument("--format", choices=["official-pytorch", "torchvision"], default="official-pytorch")
    sub.add_argument("source", metavar="SRC", help="their checkpoint (.pth.tar, .pth) or state_dict")
    sub.add_argument("--spec", required=True, help="spec path or shipped spec name")
    sub.add_argument("-o", "--output", required=True, metavar="OUT", help="state_dict file to write")
    sub = add("export-weights", cmd_export_weights, "write a state_dict as the authors' or torchvision's")
    sub.add_argument("--to", choices=["official-pytorch", "torchvision"], default="official-pytorch")
    sub.add_argument("source", metavar="SRC", help="state_dict of a cliquegen model")
    sub.add_argument("--spec", required=True, help="spec path or shipped spec name")
    sub.add_argument("-o", "--output", required=True, metavar="OUT", help="checkpoint file to write")
    return parser


def _training_options(sub: argparse.ArgumentParser) -> None:
    """The data and recipe options of ``train``, which ``sweep`` passes to every run."""
    sub.add_argument(
        "--data", required=True, help="digits, mnist5k, cifar10:DIR, cifar100:DIR, svhn:DIR or folder:DIR"
    )
    sub.add_argument("--download", action="store_true", help="fetch cifar10/cifar100/svhn files into DIR")
    sub.add_argument("--recipe", choices=list(RECIPES), help="default: paper-cifar")
    sub.add_argument(
        "--epochs", type=count(at_most=100_000), help="default: the recipe's (paper-cifar: 300, SVHN 40)"
    )
    sub.add_argument(
        "--batch-size", type=count(at_most=1_000_000), help="global batch size (default: the recipe's)"
    )
    sub.add_argument(
        "--lr", type=real(above=0, at_most=10), help="initial learning rate (default: the recipe's)"
    )
    sub.add_argument("--momentum", type=real(at_least=0, at_most=1), help="in [0, 1); default 0.9")
    sub.add_argument("--weight-decay", type=real(at_least=0, at_most=1), help="default 1e-4")
    sub.add_argument("--optimizer", choices=["sgd", "nesterov", "adamw"], help="default: the recipe's")
    sub.add_argument("--schedule", choices=["step", "cosine"], help="default: step (the recipe's steps)")
    sub.add_argument(
        "--warmup",
        type=integer(at_least=0, at_most=100_000),
        default=0,
        metavar="E",
        help="epochs of linear lr warmup",
    )
    sub.add_argument("--label-smoothing", type=real(at_least=0, at_most=1), default=0.0, metavar="S")
    sub.add_argument("--augment", choices=["none", "standard"], help="default: the recipe's")
    sub.add_argument(
        "--workers", type=integer(at_least=0, at_most=1024), default=0, help="data loader processes per rank"
    )
    sub.add_argument("--subset", type=count(), metavar="N", help="only the first N train and N test images")
    sub.add_argument("--finetune", metavar="W.pt", help="start from these weights (new classifier if needed)")
    sub.add_argument(
        "--num-classes", type=count(at_most=1_000_000), metavar="N", help="replace the spec's num_classes"
    )
    sub.add_argument("--amp", choices=["bf16", "fp16"], help="mixed precision")
    sub.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    sub.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    sub.add_argument("--tensorboard", action="store_true", help="event files in DIR/tensorboard")
    sub.add_argument("--safetensors", action="store_true", help="also write DIR/best.safetensors")


def _analysis(
    kinds: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int], help: str
) -> argparse.ArgumentParser:
    """An ``analyze`` subcommand with the options every analysis takes."""
    sub = kinds.add_parser(name, help=help, description=help)
    sub.set_defaults(handler=handler)
    sub.add_argument("--force", action="store_true", help=_FORCE_HELP)
    sub.add_argument("spec", metavar="SPEC", help="spec path or shipped spec name")
    sub.add_argument("--weights", required=True, metavar="W.pt", help="state_dict or checkpoint (best.pt)")
    sub.add_argument("-o", "--output", metavar="FIG", help="figure to write: .png, .svg or .pdf")
    sub.add_argument("--json", action="store_true", help="print the numbers behind the figure as JSON")
    return sub


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if sys.stdout is None:  # started with standard output closed (`cliquegen list >&-`)
        return _fail("cliquegen: error: standard output is closed; nothing was done", EXIT_USAGE)
    try:
        with signals_raise(), lifted(getattr(args, "force", False)):
            status = args.handler(args)
            sys.stdout.flush()  # a full disk or a closed pipe shows here, not at exit
            return status
    except SpecError as error:  # every line located: PATH:LINE:COL: error: ...
        return _fail(str(error), EXIT_USAGE)
    except CliqueGenError as error:
        return _fail(f"cliquegen: error: {error}", EXIT_USAGE)
    except (Interrupted, KeyboardInterrupt) as stop:
        signal_name, status = (
            (stop.name, stop.exit_status) if isinstance(stop, Interrupted) else ("SIGINT", 130)
        )
        return _fail(f"cliquegen: stopped by {signal_name}; no output was left half-written", status)
    except OSError as error:
        return _fail(f"cliquegen: error: {os_error_message(error)}", EXIT_USAGE)
    except MemoryError:
        return _fail("cliquegen: error: out of memory; try a smaller batch or spec", EXIT_USAGE)


def _fail(message: str, status: int) -> int:
    """Print ``message`` (control characters escaped) on standard error; return ``status``."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):  # the same broken stdout: send what is left nowhere
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    with contextlib.suppress(OSError, ValueError, AttributeError):
        print(printable(message, keep_newlines=True), file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
