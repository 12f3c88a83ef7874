"""The ``cliquegen`` argument parser: every command, its options, and their ``choices``, taken from
the modules that own them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from .._version import __version__
from ..checkpoint.layouts import OFFICIAL_FORMAT
from ..data.base import AUGMENTATIONS
from ..data.sr import PATCHES_PER_IMAGE
from ..draw.views import FORMATS, VIEWS
from ..interop.export import FORMATS as EXPORT_FORMATS
from ..interop.weights import EXPORTERS, IMPORTERS
from ..models import EMITTERS
from ..train.config import AMP_DTYPES, DEVICES, LOSSES
from ..train.recipes import OPTIMIZERS, RECIPES, SCHEDULES
from ..train.sr_evaluate import BASELINES
from .args import count, integer, real
from .commands import (
    cmd_analyze_features,
    cmd_analyze_weights,
    cmd_bench,
    cmd_build,
    cmd_eval,
    cmd_export,
    cmd_export_weights,
    cmd_import_weights,
    cmd_list,
    cmd_new,
    cmd_plot,
    cmd_predict,
    cmd_render,
    cmd_schema,
    cmd_summary,
    cmd_sweep,
    cmd_train,
    cmd_upscale,
    cmd_validate,
)

_SET_HELP = (
    "change the spec without a new file: a dotted KEY (blocks count from 1, blocks.* is every clique "
    "block) and a YAML VALUE, e.g. defaults.schedule.stages=3 or 'defaults.feature=[x0, last]'; "
    "null removes the key; repeatable"
)
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
        """A subcommand; every one that compiles a spec takes --force and --set."""
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        if force:
            sub.add_argument("--force", action="store_true", help=_FORCE_HELP)
            _set_option(sub)
        return sub

    sub = add("build", cmd_build, "write each spec's model as a standalone Python module")
    sub.add_argument("specs", nargs="+", metavar="SPEC")
    sub.add_argument("-o", "--output", default="generated", metavar="DIR", help="folder (default: generated)")
    sub = add("validate", cmd_validate, "check specs; errors as PATH:LINE:COL: error: MESSAGE")
    sub.add_argument("specs", nargs="+", metavar="SPEC", help="a spec file, or a folder: every spec under it")
    sub = add("summary", cmd_summary, "parameters, MACs and FLOPs, per block")
    sub.add_argument("spec", metavar="SPEC", help="spec path or shipped spec name")
    sub.add_argument(
        "--compare", nargs="+", default=[], metavar="SPEC", help="side by side with these specs (no --set)"
    )
    sub.add_argument("--json", action="store_true", help="print one JSON object (a list with --compare)")
    sub = add("list", cmd_list, "the shipped specs with their sizes", force=False)
    sub.add_argument("--json", action="store_true", help="print a JSON list")
    add("schema", cmd_schema, "print the JSON Schema of the spec format", force=False)
    sub = add("new", cmd_new, "write a commented starting spec: every key, its value and meaning", False)
    sub.add_argument("name", metavar="NAME", help="the spec's name: lower-case letters, digits and '-'")
    sub.add_argument(
        "--like", metavar="SPEC", help="start from this spec's values (default: the built-in ones)"
    )
    sub.add_argument("--input", metavar="HxWxC", help="input size, e.g. 32x32x3 (default) or 224x224x3")
    sub.add_argument("--classes", type=count(at_least=0, at_most=1_000_000), metavar="N", help="default 10")
    sub.add_argument("-o", "--output", metavar="FILE", help="default: NAME.yaml; - for standard output")
    sub.add_argument("--force", action="store_true", help="replace FILE if it exists")
    _set_option(sub)
    sub = add("render", cmd_render, "draw a block, its stage schedule or the network with graphviz")
    sub.add_argument("spec", metavar="SPEC", help="spec path or shipped spec name")
    sub.add_argument("--view", choices=VIEWS, default="block")
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
    sub = add(
        "eval", cmd_eval, "top-1, top-5 and loss of trained weights on a data set's test split; or a baseline"
    )
    sub.add_argument("spec", nargs="?", metavar="SPEC", help="spec path or shipped spec name")
    sub.add_argument("--weights", metavar="W.pt", help="best.pt, last.pt or a state_dict (with SPEC)")
    sub.add_argument(
        "--baseline", choices=BASELINES, help="instead of SPEC: super-resolution's bicubic on folder:DIR"
    )
    sub.add_argument("--scale", type=count(at_least=2, at_most=16), metavar="S", help="--baseline's scale")
    sub.add_argument("--data", required=True, help="as for train")
    sub.add_argument("--batch-size", type=count(at_most=65536), default=256)
    sub.add_argument("--workers", type=integer(at_least=0, at_most=1024), default=0)
    sub.add_argument("--subset", type=count(), metavar="N", help="only the first N test images")
    sub.add_argument("--device", choices=DEVICES, default="auto")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub = add("upscale", cmd_upscale, "enlarge images with a super-resolution model (tiled, 8-bit)")
    sub.add_argument("spec", metavar="SPEC", help="spec path or shipped spec name (an image-output spec)")
    sub.add_argument("--weights", required=True, metavar="W.pt", help="best.pt or last.pt of a run")
    sub.add_argument("images", nargs="+", metavar="IMAGE")
    sub.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the upscaled images")
    sub.add_argument(
        "--tile", type=count(at_most=65536), metavar="N", help="run in N x N input tiles (bounded memory)"
    )
    sub.add_argument(
        "--compare", metavar="FIG", help="also draw bicubic / model (/ HR) crops: .png, .svg, .pdf"
    )
    sub.add_argument(
        "--hr", metavar="DIR", help="--compare: originals of the same names, shown and scored beside"
    )
    sub.add_argument("--device", choices=DEVICES, default="auto")
    sub = add("predict", cmd_predict, "the most likely classes of images, with the checkpoint's class names")
    sub.add_argument("spec", metavar="SPEC", help="spec path or shipped spec name")
    sub.add_argument("--weights", required=True, metavar="W.pt", help="best.pt or last.pt of a run")
    sub.add_argument("images", nargs="+", metavar="IMAGE")
    sub.add_argument("--top-k", type=count(at_most=1000), default=5, metavar="K")
    sub.add_argument("--device", choices=DEVICES, default="auto")
    sub.add_argument("--json", action="store_true", help="print a JSON list")
    sub = add(
        "sweep", cmd_sweep, "train specs (x --grid values) x seeds with one recipe; results table and figure"
    )
    sub.add_argument("specs", nargs="+", metavar="SPEC", help="spec paths or shipped spec names")
    sub.add_argument("--out", required=True, metavar="DIR", help="OUT/<spec>/seed<S>/ and OUT/results.*")
    sub.add_argument(
        "--seeds", type=integer(at_least=0), nargs="+", default=[0], metavar="S", help="default: 0"
    )
    sub.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="train every combination of these values (the cross product of all --grid), each a "
        "variant named SPEC@KEY=V,...; YAML values split at commas outside brackets; repeatable",
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
    sub.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="safetensors: the weights alone")
    sub.add_argument("-o", "--output", required=True, metavar="FILE")
    sub = add("bench", cmd_bench, "time a spec's model: train step, inference, build; activation memory")
    sub.add_argument("spec", metavar="SPEC", help="spec path or shipped spec name")
    sub.add_argument("--batch", type=count(at_most=65536), default=4, help="batch size (default 4)")
    sub.add_argument(
        "--repeats", type=count(at_most=10_000), default=5, help="timed runs per median (default 5)"
    )
    sub.add_argument("--threads", type=count(at_most=4096), help="torch threads (default: torch's)")
    sub.add_argument("--emit", choices=list(EMITTERS), default="fx")
    sub.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    sub.add_argument(
        "--compile", action="store_true", help="also time torch.compile (inductor): first calls, medians"
    )
    sub.add_argument("--cache-dir", metavar="DIR", help="inductor's compile caches (default: torch's)")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub = add("import-weights", cmd_import_weights, "convert the authors', torchvision's or PDASR's weights")
    sub.add_argument("--format", choices=list(IMPORTERS), default=OFFICIAL_FORMAT)
    sub.add_argument("source", metavar="SRC", help="their checkpoint (.pth.tar, .pth) or state_dict")
    sub.add_argument("--spec", required=True, help="spec path or shipped spec name")
    sub.add_argument("-o", "--output", required=True, metavar="OUT", help="state_dict file to write")
    sub = add(
        "export-weights", cmd_export_weights, "write a state_dict as the authors', torchvision's or PDASR's"
    )
    sub.add_argument("--to", choices=list(EXPORTERS), default=OFFICIAL_FORMAT)
    sub.add_argument("source", metavar="SRC", help="state_dict of a cliquegen model")
    sub.add_argument("--spec", required=True, help="spec path or shipped spec name")
    sub.add_argument("-o", "--output", required=True, metavar="OUT", help="checkpoint file to write")
    return parser


def _set_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE", help=_SET_HELP)


def _training_options(sub: argparse.ArgumentParser) -> None:
    """The data and recipe options of ``train``, which ``sweep`` passes to every run."""
    sub.add_argument(
        "--data", required=True, help="digits, mnist5k, cifar10:DIR, cifar100:DIR, svhn:DIR or folder:DIR"
    )
    sub.add_argument("--download", action="store_true", help="fetch cifar10/cifar100/svhn files into DIR")
    sub.add_argument(
        "--recipe", choices=list(RECIPES), help="default: paper-cifar (sr for image-output specs)"
    )
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
    sub.add_argument("--optimizer", choices=OPTIMIZERS, help="default: the recipe's")
    sub.add_argument("--schedule", choices=SCHEDULES, help="default: step (the recipe's steps)")
    sub.add_argument(
        "--warmup",
        type=integer(at_least=0, at_most=100_000),
        default=0,
        metavar="E",
        help="epochs of linear lr warmup",
    )
    sub.add_argument("--label-smoothing", type=real(at_least=0, at_most=1), default=0.0, metavar="S")
    sub.add_argument("--augment", choices=AUGMENTATIONS, help="default: the recipe's")
    sub.add_argument(
        "--workers", type=integer(at_least=0, at_most=1024), default=0, help="data loader processes per rank"
    )
    sub.add_argument("--subset", type=count(), metavar="N", help="only the first N train and N test images")
    sub.add_argument("--finetune", metavar="W.pt", help="start from these weights (new classifier if needed)")
    sub.add_argument(
        "--num-classes", type=count(at_most=1_000_000), metavar="N", help="replace the spec's num_classes"
    )
    sub.add_argument("--amp", choices=list(AMP_DTYPES), help="mixed precision")
    sub.add_argument("--device", choices=DEVICES, default="auto")
    sub.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    sub.add_argument("--tensorboard", action="store_true", help="event files in DIR/tensorboard")
    sub.add_argument("--safetensors", action="store_true", help="also write DIR/best.safetensors")
    sub.add_argument("--loss", choices=LOSSES, help="super-resolution: pixel loss (default l1)")
    sub.add_argument(
        "--patch-size",
        type=count(at_most=4096),
        metavar="P",
        help="super-resolution: training patches' side in HR pixels (default 48 x scale)",
    )
    sub.add_argument(
        "--patches-per-image",
        type=count(at_most=1_000_000),
        metavar="N",
        help=f"super-resolution: an epoch's random patches of each training image "
        f"(default {PATCHES_PER_IMAGE})",
    )


def _analysis(
    kinds: argparse._SubParsersAction, name: str, handler: Callable[[argparse.Namespace], int], help: str
) -> argparse.ArgumentParser:
    """An ``analyze`` subcommand with the options every analysis takes."""
    sub = kinds.add_parser(name, help=help, description=help)
    sub.set_defaults(handler=handler)
    sub.add_argument("--force", action="store_true", help=_FORCE_HELP)
    _set_option(sub)
    sub.add_argument("spec", metavar="SPEC", help="spec path or shipped spec name")
    sub.add_argument("--weights", required=True, metavar="W.pt", help="state_dict or checkpoint (best.pt)")
    sub.add_argument("-o", "--output", metavar="FIG", help="figure to write: .png, .svg or .pdf")
    sub.add_argument("--json", action="store_true", help="print the numbers behind the figure as JSON")
    return sub
