"""One function per ``cliquegen`` command: each resolves its spec once, makes one call into the
package, and prints the result.  They return the exit status (0); errors propagate to
:func:`cliquegen.cli.main.main`, which reports them.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .._io import atomic_write
from ..compiler.lower import compile_spec
from ..compiler.summary import Summary, giga, millions, summarize
from ..errors import CliqueGenError, SpecError, UsageError, dims, printable
from ..spec.limits import check_limits
from ..spec.loader import STDIN, load_spec, load_spec_bytes, read_spec_source, spec_files
from ..spec.model import Spec
from ..spec.network import ImageSpec
from ..spec.overrides import apply_assignments, parse_assignment, variant_name, variant_text
from ..spec.schema import spec_schema
from ..spec.shipped import family, resolve_spec, shipped_specs
from ..spec.template import parse_input, starting_spec
from ..train.distributed import use_cuda
from ..train.sr_evaluate import evaluate_bicubic, evaluate_sr, format_scores, load_sr_model
from ..train.upscale import upscale_files

EXIT_OK, EXIT_USAGE = 0, 2  # an internal error is an uncaught exception: Python exits with 1


class _Stdout(Console):
    """rich's console, which leaves a reader that closed the pipe to :func:`cli.main.main` (a
    quiet end) instead of exiting with status 1 itself."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


# Tables keep their full width when printed to a file or a pipe (rich assumes 80 columns there).
# What is printed holds user text (paths, names): no rich markup or emoji codes are read in it.
stdout = _Stdout(
    highlight=False,
    markup=False,
    emoji=False,
    soft_wrap=True,
    width=None if sys.stdout is not None and sys.stdout.isatty() else 160,
)


def _say(text: str) -> None:
    """Print a line of user text (paths, names) as it is, control characters escaped."""
    stdout.print(printable(text, keep_newlines=True))


def _summary_table(summary: Summary, title: str) -> Table:
    head = any(part.head_reads is not None for part in summary.parts)  # none in an image network
    table = Table(
        title=f"{title}: {millions(summary.params)} params, {giga(summary.flops)} FLOPs",
        caption="output: what a part hands on (a block: to its transition; the last block: to the head); "
        "head reads: the block feature the head pools"
        if head
        else "output: what each part of the network gives",
    )
    texts = ("part", "output", "head reads") if head else ("part", "output")
    for column in (*texts, "params", "MACs", "FLOPs"):
        table.add_column(column, justify="left" if column in texts else "right")
    for part in summary.parts:
        reads = ["" if part.head_reads is None else dims(part.head_reads)] if head else []
        numbers = (f"{part.params:,}", f"{part.macs:,}", giga(part.flops))
        table.add_row(part.part, dims(part.output), *reads, *numbers)
    table.add_section()
    blank = ["", ""] if head else [""]
    table.add_row("total", *blank, f"{summary.params:,}", f"{summary.macs:,}", giga(summary.flops))
    return table


def _compare_table(summaries: list[tuple[str, Summary]]) -> Table:
    """Parameters and FLOPs of each part, one column pair per spec."""
    table = Table(title="parameters and FLOPs per part")
    table.add_column("part")
    for label, _ in summaries:
        table.add_column(f"{label}\nparams", justify="right")
        table.add_column("FLOPs", justify="right")
    parts = list(dict.fromkeys(part.part for _, summary in summaries for part in summary.parts))
    parts.sort(key=lambda part: {"head": 1, "classifier": 2}.get(part, 0))  # blocks and transitions first
    for name in parts:
        row = [name]
        for _, summary in summaries:
            part = next((p for p in summary.parts if p.part == name), None)
            row += ["", ""] if part is None else [f"{part.params:,}", giga(part.flops)]
        table.add_row(*row)
    table.add_section()
    totals = [["total"]] + [[f"{summary.params:,}", giga(summary.flops)] for _, summary in summaries]
    table.add_row(*[cell for cells in totals for cell in cells])
    return table


def _checked_spec(name_or_path: str, sets: list[str] | None = None) -> Spec:
    """resolve_spec with the ``--set`` assignments applied, then the resource limits (lifted by
    --force), reported at the spec file."""
    spec = resolve_spec(name_or_path)
    if sets:
        spec = apply_assignments(spec, [parse_assignment(text) for text in sets])
    check_limits(spec, path=name_or_path)
    return spec


def _spec_arg(args: argparse.Namespace, attribute: str = "spec") -> str | Spec:
    """What a command hands the package: the spec as given, or (with --set) the checked variant."""
    given = getattr(args, attribute)
    spec = _checked_spec(given, args.sets)
    return spec if args.sets else given


def cmd_validate(args: argparse.Namespace) -> int:
    diagnostics = []
    assignments = [parse_assignment(text) for text in args.sets]
    for path in spec_files(args.specs):
        try:
            name, data = read_spec_source(path)  # `-`: standard input
            spec = apply_assignments(load_spec_bytes(data, path=name), assignments)
            check_limits(spec, path=name)
        except SpecError as error:
            diagnostics += error.diagnostics
        else:
            _say(f"{name}: ok ({spec.name})")
    if diagnostics:
        raise SpecError(diagnostics)
    return EXIT_OK


def cmd_summary(args: argparse.Namespace) -> int:
    spec = _checked_spec(args.spec, args.sets)
    label = variant_name(spec.name, [parse_assignment(text) for text in args.sets])
    summaries = [(label, summarize(compile_spec(spec)))]
    summaries += [(other, summarize(compile_spec(_checked_spec(other)))) for other in args.compare]
    labels = [name for name, _ in summaries]
    summaries = [  # two specs of the same name: tell them apart by what was given
        (name if labels.count(name) == 1 else given, summary)
        for (name, summary), given in zip(summaries, [args.spec, *args.compare], strict=True)
    ]
    if args.json:
        documents = [{**summary.to_json(), "label": name} for name, summary in summaries]
        print(json.dumps(documents if args.compare else documents[0], indent=2))
    elif args.compare:
        stdout.print(_compare_table(summaries))
    else:
        stdout.print(_summary_table(*summaries[0][::-1]))
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
        table.add_row(shown, row["name"], millions(row["params"]), giga(row["flops"]), row["path"])
    stdout.print(table)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(spec_schema(), indent=2))
    return EXIT_OK


def cmd_new(args: argparse.Namespace) -> int:
    shape = parse_input(args.input) if args.input is not None else None
    like = _checked_spec(args.like, args.sets) if args.like is not None else None
    label = args.like if not args.sets else f"{args.like} " + " ".join(f"--set {t}" for t in args.sets)
    text = starting_spec(args.name, like, label, input=shape, num_classes=args.classes)
    if args.sets and like is None:  # no spec to vary yet: vary the built-in start
        start = apply_assignments(load_spec(text), [parse_assignment(t) for t in args.sets])
        label = " ".join(f"--set {t}" for t in args.sets)
        text = starting_spec(args.name, start, f"the built-in start with {label}")
    output = args.output if args.output is not None else f"{args.name}.yaml"
    spec = load_spec(text, path=output)  # what we write validates, or this is our bug
    compiled = compile_spec(spec)
    summary, blocks = summarize(compiled), len(compiled.program.block_outputs)
    if output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    if os.path.lexists(output) and not args.force:
        raise UsageError(f"{output} exists; choose another -o FILE, or pass --force to replace it")
    atomic_write(output, text)
    stdout.print(
        f"wrote {printable(output)}: {spec.name}, {blocks} block{'s' * (blocks > 1)}, "
        f"{millions(summary.params)} "
        f"params, {giga(summary.flops)} FLOPs; edit it, then `cliquegen validate {printable(output)}`",
        markup=False,
    )
    return EXIT_OK


def cmd_build(args: argparse.Namespace) -> int:
    from ..emit.build import build_files

    # every spec's problems, its size included, are found before anything is written; each
    # file is read once (a pipe, `-`, gives its text only once)
    if args.specs.count(STDIN) > 1:
        raise UsageError("- (standard input) can be read only once")
    assignments = [parse_assignment(text) for text in args.sets]
    loaded, diagnostics = [], []
    for path in args.specs:
        try:
            name, data = read_spec_source(path)
            spec = load_spec_bytes(data, path=name, hashed="input" if path == STDIN else "file")
            spec = apply_assignments(spec, assignments)  # a variant names itself in the header
            check_limits(spec, path=name)
        except SpecError as error:
            diagnostics += error.diagnostics
            continue
        loaded.append(spec)
    if diagnostics:
        raise SpecError(diagnostics)
    for path, compiled in build_files(loaded, args.output, force=args.force):
        summary = summarize(compiled)
        _say(f"wrote {path}: {millions(summary.params)} params, {giga(summary.flops)} FLOPs")
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    from .._io import atomic_write
    from ..draw.views import output_format, render
    from ..errors import UsageError

    fmt = output_format(args.output, args.format)
    if fmt not in ("dot", "svg") and args.output is None:
        raise UsageError(f"{fmt.upper()} output is binary: give the file to write with -o FILE")
    spec = _checked_spec(args.spec, args.sets)
    data = render(spec, args.view, block=args.block, depth=args.depth, format=fmt)
    if args.output is None:
        sys.stdout.write(data)
        return EXIT_OK
    atomic_write(args.output, data)
    _say(f"wrote {args.output} ({args.view} view, {fmt})")
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from ..train.loop import TrainConfig, run

    options = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__}
    options["spec"] = _spec_arg(args)
    run(TrainConfig(**options), console=stdout)
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from ..train.evaluate import evaluate

    if args.baseline is not None or args.scale is not None:
        return _eval_baseline(args)
    if args.spec is None or args.weights is None:
        raise UsageError("eval needs SPEC and --weights, or --baseline bicubic --scale S")
    spec = _spec_arg(args)
    if isinstance(spec if isinstance(spec, Spec | ImageSpec) else resolve_spec(spec), ImageSpec):
        return _eval_sr(args, spec)
    result = evaluate(
        _spec_arg(args), args.weights, args.data, batch_size=args.batch_size, workers=args.workers,
        device=args.device, subset=args.subset,
    )  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _say(
            f"{result['spec']} on {result['data']} ({result['images']:,} test images): "
            f"top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%  loss {result['loss']:.4f}"
        )
    return EXIT_OK


def _eval_sr(args: argparse.Namespace, spec: str | ImageSpec) -> int:
    """``eval SPEC --weights W --data folder:DIR`` of a super-resolution model, bicubic beside it."""
    result = evaluate_sr(spec, args.weights, args.data, device=_device(args.device))
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))
        return EXIT_OK
    _say(f"{result['spec']} x{result['scale']} on {result['data']} ({result['images']} images):")
    _say(f"  model    {format_scores(result)}")
    _say(f"  bicubic  {format_scores(result['bicubic'])}")
    return EXIT_OK


def cmd_upscale(args: argparse.Namespace) -> int:
    """``upscale SPEC --weights W IMAGE... -o DIR``: every image that can be read is upscaled; each
    that cannot gets one error line, and the status is then 2."""
    trained = load_sr_model(_spec_arg(args), args.weights, _device(args.device))
    failed = 0

    def report(path: str, error: CliqueGenError) -> None:
        nonlocal failed
        failed += 1
        print(
            printable(f"cliquegen: error: {path}: {error}".replace(f"{path}: {path}: ", f"{path}: ")),
            file=sys.stderr,
        )

    written = upscale_files(
        trained.model, trained.spec, args.images, args.output, tile=args.tile, hr=args.hr,
        compare=args.compare, on_error=report, console=stdout,
    )  # fmt: skip
    for source, target in written:
        _say(f"{source} -> {target}")
    if args.compare is not None and written:
        _say(f"wrote {args.compare}")
    return EXIT_USAGE if failed else EXIT_OK


def _device(device: str) -> str:
    return "cuda" if use_cuda(device) else "cpu"


def _eval_baseline(args: argparse.Namespace) -> int:
    """``eval --baseline bicubic --scale S --data folder:DIR``: super-resolution without a model."""
    if args.baseline is None:
        raise UsageError("--scale goes with --baseline bicubic (a model's scale comes from its spec)")
    if args.spec is not None or args.weights is not None:
        raise UsageError("--baseline evaluates bicubic alone: leave out SPEC and --weights")
    if args.scale is None:
        raise UsageError("--baseline bicubic needs --scale S, the upscaling factor")
    result = evaluate_bicubic(args.data, args.scale)
    if args.json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        stdout.print(
            f"bicubic x{result['scale']} on {result['data']} ({result['images']} images): "
            + format_scores(result),
            markup=False,
        )
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from ..train.evaluate import predict

    results = predict(_spec_arg(args), args.weights, args.images, top_k=args.top_k, device=args.device)
    if args.json:
        print(json.dumps(results, indent=2))
        return EXIT_OK
    for result in results:
        ranked = ", ".join(f"{t['class']} {100 * t['probability']:.1f}%" for t in result["top"])
        _say(f"{result['image']}: {ranked}")
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..train.sweep import SweepConfig, sweep

    sweep(SweepConfig.from_args(vars(args)), console=stdout)  # checks every variant first
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    from ..train.sweep import plot_runs

    _say(f"wrote {plot_runs(args.runs, args.output)}")
    return EXIT_OK


def cmd_analyze_weights(args: argparse.Namespace) -> int:
    from ..analysis.analyze import analyze_weights

    matrices, path = analyze_weights(_spec_arg(args), args.weights, args.block, args.output, args.json)
    _report_analysis({"blocks": [m.to_json() for m in matrices]}, path, args.json)
    return EXIT_OK


def cmd_analyze_features(args: argparse.Namespace) -> int:
    from ..analysis.analyze import analyze_features

    options = {k: getattr(args, k) for k in ("image", "sample", "block", "output", "json", "mean", "std")}
    maps, path = analyze_features(_spec_arg(args), args.weights, **options)
    _report_analysis(maps.to_json(), path, args.json)
    return EXIT_OK


def _report_analysis(numbers: dict, path: Path | None, as_json: bool) -> None:
    if as_json:
        print(json.dumps(numbers, indent=2))
    if path is not None:  # to stderr when stdout carries JSON
        print(printable(f"wrote {path}"), file=sys.stderr if as_json else sys.stdout)


def cmd_export(args: argparse.Namespace) -> int:
    from ..interop.export import NOTES, export_model

    path = export_model(_spec_arg(args), args.format, args.output, weights=args.weights)
    _say(f"wrote {path} ({args.format}, {path.stat().st_size:,} bytes)")
    if args.format in NOTES:
        print(NOTES[args.format], file=sys.stderr)
    return EXIT_OK


def cmd_import_weights(args: argparse.Namespace) -> int:
    from ..checkpoint.files import load_weights_file, save_weights_file
    from ..interop.convert import check_loads
    from ..interop.weights import IMPORTERS

    spec = _checked_spec(args.spec, args.sets)
    conversion = IMPORTERS[args.format](load_weights_file(args.source), spec)
    check_loads(conversion.state_dict, spec)
    save_weights_file(conversion.state_dict, args.output)
    notes = [f"ignored the unused {key}" for key in conversion.ignored]
    if conversion.filled:
        notes.append(f"set {len(conversion.filled)} missing num_batches_tracked to 0")
    _say(
        f"wrote {args.output}: {len(conversion.state_dict)} tensors for {spec.name}"
        + "".join(f"\n  {note}" for note in notes)
    )
    return EXIT_OK


def cmd_export_weights(args: argparse.Namespace) -> int:
    from ..checkpoint.files import load_weights_file, save_weights_file
    from ..interop.weights import EXPORTERS

    spec = _checked_spec(args.spec, args.sets)
    checkpoint = EXPORTERS[args.to](load_weights_file(args.source), spec)
    save_weights_file(checkpoint, args.output)
    _say(f"wrote {args.output}: {args.to} checkpoint of {spec.name}")
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from ..analysis.bench import bench_spec

    spec = _checked_spec(args.spec, args.sets)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="cliquegen-bench-") as folder:
        given = args.spec
        if args.sets:  # the peak-RSS subprocesses build the variant from a file
            given = os.path.join(folder, f"{spec.name}.yaml")
            Path(given).write_text(variant_text(spec, args.spec, [parse_assignment(t) for t in args.sets]))
        result = bench_spec(
            given,
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
        stdout.print("\n".join(result.lines()))
    return EXIT_OK
