"""Hostile inputs, round three: data-set files, checkpoint records, images and spec input.

Every case is bad input an attacker (or an accident) can hand to cliquegen; each must end in
a clean error (exit 2, one message, no traceback) or, where the input is genuine, work.  The
CIFAR and MATLAB readers themselves are tested in ``test_safe_readers.py``; here they are
reached through ``load_data``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import pickle
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cliquegen import build_fx, create_model, load_spec
from cliquegen.checkpoint.files import MAX_ZIP_RATIO, info_metadata, load_weights_file
from cliquegen.checkpoint.info import ModelInfo, model_info, sha256_text
from cliquegen.checkpoint.load import load_trained, load_weights
from cliquegen.cli.main import main
from cliquegen.data import folder as folder_module
from cliquegen.data.folder import MAX_IMAGE_PIXELS, ImageFolder, read_image
from cliquegen.data.sets import load_data
from cliquegen.errors import SpecError, UsageError, WeightsError
from cliquegen.spec.loader import load_spec_text
from cliquegen.spec.model import BlockSpec, Spec
from cliquegen.train import evaluate as evaluate_module

image_module = pytest.importorskip("PIL.Image")

TINY = """\
name: tiny
input: {channels: 1, height: 8, width: 8}
num_classes: 10
stem: {kind: cifar, channels: 4}
blocks:
  - {layers: 2, channels: 4}
"""
CLASSES = [str(k) for k in range(10)]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def checkpoint(spec_path: Path, **info_changes: object) -> dict:
    """What ``train`` saves for the tiny spec (fresh weights), its record changed as given."""
    spec = load_spec(spec_path)
    torch.manual_seed(0)
    info = model_info(spec, classes=CLASSES, mean=[0.5], std=[0.25], data="digits")
    record = {**info.to_dict(), **info_changes}
    return {"model": create_model(spec).state_dict(), "info": record}


def grey_png(path: Path, size: tuple[int, int] = (8, 8), value: int = 128) -> Path:
    image_module.fromarray(np.full(size[::-1], value, np.uint8)).save(path)
    return path


# --- data-set files through load_data ----------------------------------------------------------


def test_the_object_dtype_trick_in_batches_meta_is_refused(tmp_path: Path, tiny: Path) -> None:
    """numpy.dtype rebuilt with a state that adds an object field (a pointer read from file
    bytes, a segfault at an address the file chose): the reader refuses it unrun."""
    folder = tmp_path / "c10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    state = b"(K\x03X\x01\x00\x00\x00|N(X\x01\x00\x00\x00at}(X\x01\x00\x00\x00a"
    state += b"cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87RK\x00\x86uK\x08K\x01K?tb"
    void = b"cnumpy\ndtype\nX\x02\x00\x00\x00V8\x89\x88\x87R" + state
    scalar = b"cnumpy.core.multiarray\nscalar\n" + void + b"C\x08" + b"\x41" * 8 + b"\x86R"
    (folder / "batches.meta").write_bytes(b"\x80\x02}(X\x0b\x00\x00\x00label_names" + scalar + b"u.")
    with pytest.raises(UsageError, match=r"batches\.meta: not a CIFAR batch: it names 'numpy"):
        load_data(f"cifar10:{tmp_path / 'c10'}", load_spec(tiny), check=False)


def test_cifar_class_names_with_control_characters_are_refused(tmp_path: Path, tiny: Path) -> None:
    folder = tmp_path / "c10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [b"cat\x1b]0;owned\x07"] + [b"c%d" % k for k in range(9)]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}, protocol=2))
    with pytest.raises(UsageError, match="batches.meta: the class name .* is not one line of printable text"):
        load_data(f"cifar10:{tmp_path / 'c10'}", load_spec(tiny), check=False)


def test_an_svhn_compression_bomb_is_refused_before_loadmat(
    tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 KB that declare a 3 GB X: refused from the variable's header; loadmat never runs."""
    scipy_io = pytest.importorskip("scipy.io")
    monkeypatch.setattr(scipy_io, "loadmat", lambda *a, **k: pytest.fail("loadmat ran"))
    dims = (32, 32, 3, 1_000_000)

    def element(kind: int, payload: bytes, length: int | None = None) -> bytes:
        size = len(payload) if length is None else length
        return struct.pack("<II", kind, size) + payload + b"\x00" * (-len(payload) % 8)

    body = (
        element(6, struct.pack("<II", 9, 0))  # uint8 array
        + element(5, struct.pack("<4i", *dims))
        + element(1, b"X")
        + struct.pack("<II", 2, 3_072_000_000)
        + b"\x00" * 4096
    )
    matrix = struct.pack("<II", 14, len(body) - 4096 + 3_072_000_000) + body
    packed = zlib.compress(matrix)
    header = b"MATLAB 5.0 MAT-file".ljust(116, b" ") + b"\x00" * 8 + struct.pack("<H", 0x0100) + b"IM"
    root = tmp_path / "svhn"
    root.mkdir()
    (root / "train_32x32.mat").write_bytes(header + struct.pack("<II", 15, len(packed)) + packed)
    with pytest.raises(
        UsageError, match=r"train_32x32\.mat: not a usable MATLAB 5 file: .*3,072,000,000 bytes"
    ):
        load_data(f"svhn:{root}", load_spec(tiny), check=False)


# --- checkpoint records ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"std": [0.0]}, r"info\.std\[0\]: input should be greater than or equal to 0\.000001 \(got 0\.0\)"),
        ({"mean": [float("nan")]}, r"info\.mean\[0\]: input should be a finite number"),
        ({"std": [float("inf")]}, r"info\.std\[0\]: input should be a finite number"),
        ({"classes": ["\x1b[2J" + c for c in CLASSES]}, r"info\.classes\[0\]: contains the control"),
        ({"classes": ["a\u202eb"] * 10}, r"U\+202E"),
        ({"classes": 5}, r"info\.classes: input should be a valid list"),
        ({"classes": ["x" * 300] * 10}, r"info\.classes\[0\]: string should have at most 255 characters"),
        ({"mean": "abc"}, r"info\.mean: input should be a valid list"),
        ({"mean": [True], "std": [1.0]}, r"info\.mean\[0\]: input should be a valid number"),
        ({"mean": None}, r"mean and std must be recorded together"),
        ({"eval_transform": 3}, r"info\.eval_transform: input should be 'resize' or 'centre-crop'"),
        ({"input_size": "x"}, r"info\.input_size: input should be a valid list"),
        ({"input_size": [1, 8, 8, 8]}, r"info\.input_size: list should have at most 3 items"),
        ({"overrides": {"blocks": [{"layers": 40, "channels": 4000}]}}, r"may override only num_classes"),
        ({"overrides": {"num_classes": 10**9}}, r"info\.overrides\.num_classes: input should be less"),
        ({"spec_sha256": "zz"}, r"info\.spec_sha256: string should match"),
        ({"spec_name": "../x"}, r"info\.spec_name: string should match"),
        ({"secret": 1}, r"info\.secret: not a field of cliquegen's record"),
    ],
)
def test_damaged_records_are_refused_naming_the_field(
    change: dict, message: str, tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "w.pt"
    torch.save(checkpoint(tiny, **change), weights)
    with pytest.raises(WeightsError, match=message):
        load_trained(tiny, weights)
    code, out, err = run(
        ["predict", str(tiny), "--weights", str(weights), str(grey_png(tmp_path / "i.png"))], capsys
    )
    assert (code, out) == (2, "") and err.startswith(
        f"cliquegen: error: {weights}: its 'info' entry is damaged"
    )
    assert "\x1b" not in err and "\u202e" not in err


@pytest.mark.parametrize("value", ["a string", [1, 2], 7])
def test_an_info_entry_that_is_not_a_record_is_refused(value: object, tiny: Path, tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    record = checkpoint(tiny)
    record["info"] = value
    torch.save(record, weights)
    with pytest.raises(
        WeightsError, match=f"its 'info' entry is an? {type(value).__name__}, not cliquegen's"
    ):
        load_trained(tiny, weights)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"input_size": [3, 32, 32]}, r"was trained on 3x32x32 inputs, but spec 'tiny' takes 1x8x8"),
        ({"classes": ["a", "b"]}, r"names 2 classes, but spec 'tiny' has num_classes: 10"),
        (
            {"mean": [0.1, 0.2], "std": [0.3, 0.4]},
            r"records a normalisation of 2 channels, but spec 'tiny' takes 1-channel",
        ),
    ],
)
def test_a_record_that_disagrees_with_the_users_spec_is_refused(
    change: dict, message: str, tiny: Path, tmp_path: Path
) -> None:
    weights = tmp_path / "w.pt"
    torch.save(checkpoint(tiny, **change), weights)
    with pytest.raises(WeightsError, match=f"w.pt \\(spec 'tiny'\\) {message}"):
        load_trained(tiny, weights)


def test_an_override_cannot_make_the_model_bigger_than_the_file(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few bytes of record asking for 1,000,000 classes: refused before any model is built."""
    weights = tmp_path / "w.pt"
    record = checkpoint(tiny, overrides={"num_classes": 1_000_000}, classes=None)
    torch.save(record, weights)
    monkeypatch.setattr("cliquegen.checkpoint.load.create_model", lambda *a: pytest.fail("built"))
    with pytest.raises(WeightsError, match=r"override num_classes: 1000000 makes spec 'tiny' a model of"):
        load_trained(tiny, weights)


def test_a_genuine_num_classes_override_still_loads(tiny: Path, tmp_path: Path) -> None:
    spec = load_spec(tiny)
    weights = tmp_path / "w.pt"
    info = model_info(spec, classes=["a", "b", "c"], mean=[0.5], std=[0.2], overrides={"num_classes": 3})
    torch.save({"model": create_model(spec, num_classes=3).state_dict(), "info": info.to_dict()}, weights)
    trained = load_trained(tiny, weights)
    assert trained.spec.num_classes == 3 and trained.info.classes == ["a", "b", "c"]


def test_the_record_of_a_train_checkpoint_round_trips(tiny: Path) -> None:
    record = checkpoint(tiny)["info"]
    assert ModelInfo.from_dict(record, "w.pt").to_dict() == record


def test_nan_weights_are_called_nan_not_a_changed_spec(tiny: Path, tmp_path: Path) -> None:
    record = checkpoint(tiny)
    record["model"]["classifier.weight"][0, 0] = float("nan")
    torch.save(record, tmp_path / "w.pt")
    with pytest.raises(WeightsError) as caught:
        load_trained(tiny, tmp_path / "w.pt")
    message = str(caught.value)
    assert "some are NaN or infinite (did the training run diverge?)" in message
    assert "changed" not in message


def test_deeply_nested_safetensors_metadata_is_refused(tiny: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    spec = load_spec(tiny)
    metadata = info_metadata(model_info(spec))
    metadata["classes"] = "[" * 100_000 + "]" * 100_000
    save_file(create_model(spec).state_dict(), tmp_path / "w.safetensors", metadata=metadata)
    with pytest.raises(WeightsError, match="its metadata 'classes' is nested too deeply"):
        load_weights_file(tmp_path / "w.safetensors")


@pytest.mark.parametrize("wrapped", [True, False])
def test_a_non_tensor_in_a_state_dict_is_refused_also_for_finetune(
    wrapped: bool, tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = checkpoint(tiny)
    record["model"]["classifier.weight"] = 5
    weights = tmp_path / "w.pt"
    torch.save(record if wrapped else record["model"], weights)
    where = "its 'model' entry" if wrapped else "it"
    message = f"{weights}: {where} holds an int under 'classifier.weight'; a state_dict holds tensors"
    with pytest.raises(WeightsError, match=message):
        load_weights_file(weights)
    argv = ["train", str(tiny), "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "run")]
    code, _, err = run([*argv, "--finetune", str(weights)], capsys)
    assert (code, err) == (2, f"cliquegen: error: {message}\n")


def test_a_zip_checkpoint_may_not_unpack_far_beyond_its_size(tmp_path: Path) -> None:
    """torch.save stores entries; the same entries deflated make a 1 MB file of gigabytes."""
    stored = tmp_path / "stored.pt"
    torch.save({"w": torch.zeros(1 << 20)}, stored)  # 4 MiB of zeros, as torch writes them
    load_weights_file(stored)
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(stored) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for entry in source.infolist():
            out.writestr(entry.filename, source.read(entry.filename))
    assert bomb.stat().st_size < 64 << 10
    with pytest.raises(WeightsError, match=f"more than {MAX_ZIP_RATIO} times its own"):
        load_weights_file(bomb)


def test_misfit_messages_quote_only_a_short_recorded_name(tiny: Path) -> None:
    spec = load_spec(tiny)
    state = create_model(spec).state_dict()
    state["extra"] = torch.zeros(1)
    with pytest.raises(WeightsError) as caught:
        load_weights(create_model(spec), {"model": state, "spec": "n" * 100_000}, spec)
    assert "n" * 101 not in str(caught.value)


def test_spec_sha256_is_the_files_own_also_with_crlf(tmp_path: Path) -> None:
    path = tmp_path / "crlf.yaml"
    path.write_bytes(TINY.replace("\n", "\r\n").encode())
    info = model_info(load_spec(path))
    assert info.spec_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.spec_sha256 == sha256_text(info.spec_text)


def test_predict_escapes_what_it_prints(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "w.pt"
    torch.save(checkpoint(tiny), weights)
    image = grey_png(tmp_path / "a\x1b[2Jb.png")
    code, out, _ = run(["predict", str(tiny), "--weights", str(weights), str(image)], capsys)
    assert code == 0 and "\x1b" not in out and "a\\x1b[2Jb.png: " in out


# --- images ------------------------------------------------------------------------------------


def test_a_long_thin_image_is_cropped_without_scaling_it_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An 863-byte 1 x 200000 PNG: the centre crop resamples only the region it keeps."""
    path = tmp_path / "long.png"
    image_module.fromarray(np.zeros((1, 200_000), np.uint8)).save(path)
    assert path.stat().st_size < 1024
    sizes = []
    resize = image_module.Image.resize
    monkeypatch.setattr(
        image_module.Image,
        "resize",
        lambda self, size, *a, **k: sizes.append(size) or resize(self, size, *a, **k),
    )
    pixels = read_image(path, "RGB", (224, 224), "centre-crop")
    assert pixels.shape == (3, 224, 224) and sizes == [(224, 224)]


def test_centre_crop_keeps_its_geometry() -> None:
    """The kept region is the centre of the image scaled to 256/224 of the input size: for a
    448 x 256 image and a 224 x 224 input, 224 x 224 of the middle (256 scales by 1)."""
    assert folder_module._centre_box((448, 256), 224, 224) == (112.0, 16.0, 336.0, 240.0)


def test_an_image_over_the_pixel_limit_is_refused_unread(tmp_path: Path) -> None:
    """A PNG header declaring 9000 x 9000 (81 M pixels, under Pillow's own warning): refused
    from the header, before any pixel is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 9000, 9000, 8, 0, 0, 0, 0)
    path = tmp_path / "big.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    assert MAX_IMAGE_PIXELS < 9000 * 9000
    with pytest.raises(UsageError, match=r"big\.png: refused: 9,000 x 9,000 pixels, over the limit"):
        read_image(path, "L", (8, 8))


def test_a_16_bit_png_is_scaled_not_saturated(tmp_path: Path) -> None:
    path = tmp_path / "g16.png"
    image_module.fromarray(np.full((4, 4), 32768, np.uint16)).save(path)
    assert image_module.open(path).mode.startswith("I")
    grey = read_image(path, "L", (4, 4))
    assert torch.allclose(grey, torch.full((1, 4, 4), 128 / 255))
    assert torch.allclose(read_image(path, "RGB", (2, 2)), torch.full((3, 2, 2), 128 / 255))


def test_an_oversized_png_text_chunk_is_a_clean_error(tmp_path: Path, capsys, tiny: Path) -> None:
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("comment", "x" * (2 << 20), zip=True)  # inflates past Pillow's text limit
    path = tmp_path / "text.png"
    image_module.fromarray(np.zeros((4, 4), np.uint8)).save(path, pnginfo=text)
    with pytest.raises(UsageError, match=r"text\.png: cannot read the image \(Decompressed data too large"):
        read_image(path, "L", (4, 4))


def test_other_formats_are_not_decoded_whatever_the_name(tmp_path: Path) -> None:
    """An EPS named .png would be rendered by running Ghostscript: it is not even identified."""
    path = tmp_path / "page.png"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    assert image_module.open(path).format == "EPS"  # what Pillow alone would do
    with pytest.raises(UsageError, match=r"page\.png: cannot read the image: it is not a PNG, JPEG"):
        read_image(path, "L", (8, 8))


def test_a_corrupt_image_in_a_worker_is_one_clean_error(tmp_path: Path) -> None:
    good, bad = grey_png(tmp_path / "good.png"), tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    dataset = ImageFolder([(good, 0), (bad, 1)], 1, (8, 8))
    with pytest.raises(UsageError) as caught:
        list(DataLoader(dataset, batch_size=1, num_workers=1))
    message = str(caught.value)  # rebuilt in this process from the worker's traceback
    assert message.startswith(f"{bad}: cannot read the image (") and "\n" not in message
    assert "Traceback" not in message and "worker" not in message


@pytest.mark.parametrize("layout", ["flat", "imagenet"])
def test_an_empty_class_folder_is_refused(layout: str, tmp_path: Path, tiny: Path) -> None:
    root = tmp_path / "images"
    base = root / "train" if layout == "imagenet" else root
    for name in ("a", "b"):
        for k in range(5):
            (base / name).mkdir(parents=True, exist_ok=True)
            grey_png(base / name / f"{k}.png")
            if layout == "imagenet":
                (root / "test" / name).mkdir(parents=True, exist_ok=True)
                grey_png(root / "test" / name / f"{k}.png")
    (base / "c").mkdir()
    (base / "c" / "notes.txt").write_text("no images here")
    with pytest.raises(UsageError, match=r"c: the class folder holds no \.png/\.jpg/\.jpeg images"):
        load_data(f"folder:{root}", load_spec(tiny), check=False)


def test_a_class_folder_name_with_control_characters_is_refused(tmp_path: Path, tiny: Path) -> None:
    for name in ("a", "b\x1b[31m"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for k in range(5):
            grey_png(tmp_path / "images" / name / f"{k}.png")
    with pytest.raises(UsageError, match=r"b\\x1b\[31m: a class folder name with control"):
        load_data(f"folder:{tmp_path / 'images'}", load_spec(tiny), check=False)


def test_predict_runs_bounded_batches(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "w.pt"
    torch.save(checkpoint(tiny), weights)
    images = [grey_png(tmp_path / f"{k}.png", value=40 * k) for k in range(5)]
    whole = evaluate_module.predict(tiny, weights, images)
    monkeypatch.setattr(evaluate_module, "PREDICT_BATCH", 2)
    seen = []
    stack = torch.stack

    def counted(tensors: list[torch.Tensor]) -> torch.Tensor:
        seen.append(len(tensors))
        return stack(tensors)

    monkeypatch.setattr(evaluate_module.torch, "stack", counted)
    batched = evaluate_module.predict(tiny, weights, images)
    assert seen == [2, 2, 1]
    assert [r["image"] for r in batched] == [str(p) for p in images]
    for one, other in zip(batched, whole, strict=True):
        assert [t["index"] for t in one["top"]] == [t["index"] for t in other["top"]]
        assert [t["probability"] for t in one["top"]] == pytest.approx(
            [t["probability"] for t in other["top"]]
        )


# --- specs and the command line ----------------------------------------------------------------


def test_a_json_spec_with_an_astral_character_loads(tmp_path: Path) -> None:
    """JSON escapes U+1F600 as the surrogate pair \\ud83d\\ude00; joined, not refused."""
    document = json.loads(
        json.dumps({"name": "tiny", "num_classes": 3, "blocks": [{"layers": 2, "channels": 4}]})
    )
    document["description"] = "\U0001f600"
    path = tmp_path / "emoji.yaml"
    path.write_text(json.dumps(document))  # ensure_ascii: the escapes
    assert "\\ud83d\\ude00" in path.read_text()
    assert load_spec(path).description == "\U0001f600"
    path.write_text(json.dumps(document).replace("\\ude00", ""))
    with pytest.raises(SpecError, match=r"the escape \\ud83d is half of a UTF-16 surrogate pair"):
        load_spec(path)


def test_a_3x3_input_with_the_imagenet_stem_is_valid() -> None:
    spec = load_spec_text(
        "name: small\nnum_classes: 3\ninput: {channels: 3, height: 3, width: 3}\n"
        "stem: {kind: imagenet, channels: 4}\nblocks:\n  - {layers: 2, channels: 4}\n"
    )
    assert build_fx(spec).eval()(torch.zeros(1, 3, 3, 3)).shape == (1, 3)
    with pytest.raises(
        SpecError, match=r"input of 5x5 \(2x2 after the ImageNet stem\) is too small for 3 blocks"
    ):
        load_spec_text(
            "name: small\nnum_classes: 3\ninput: {channels: 3, height: 5, width: 5}\nstem: {kind: imagenet}\n"
            "blocks:\n" + "  - {layers: 2, channels: 4}\n" * 3
        )


@pytest.mark.parametrize(
    "changed",
    [
        lambda s: s.model_copy(update={"num_classes": -1}),
        lambda s: s.model_copy(update={"num_classes": "x"}),
        lambda s: s.model_copy(
            update={"blocks": [BlockSpec(layers=2, channels=4).model_copy(update={"layers": 0})]}
        ),
        lambda s: (s.blocks.clear(), s)[1],
        lambda s: (s.blocks.append("x"), s)[1],
        lambda s: Spec.model_construct(name="a", num_classes=3),
    ],
)
def test_a_spec_changed_after_validation_is_a_spec_error(changed, tiny: Path) -> None:
    for build in (build_fx, create_model, lambda spec: create_model(spec, emit="source")):
        spec = changed(load_spec(tiny))
        with pytest.raises(SpecError, match=r"\(changed after validation\?\)"):
            build(spec)


def test_build_reads_a_pipe_once(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    """`build /dev/stdin` read the spec twice (the second time empty); `build -` reads stdin."""
    read, write = os.pipe()
    os.write(write, TINY.encode())
    os.close(write)
    try:
        code, out, err = run(["build", f"/dev/fd/{read}", "-o", str(tmp_path / "a")], capsys)
    finally:
        os.close(read)
    assert (code, err) == (0, "") and (tmp_path / "a" / "tiny.py").is_file()
    sha = hashlib.sha256(TINY.encode()).hexdigest()
    assert f"sha256 of its file: {sha}" in (tmp_path / "a" / "tiny.py").read_text()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(TINY.encode())))
    code, out, err = run(["build", "-", "-o", str(tmp_path / "b")], capsys)
    assert (code, err) == (0, "")
    header = (tmp_path / "b" / "tiny.py").read_text()
    assert "Spec: <stdin>" in header and f"sha256 of its input: {sha}" in header
    code, _, err = run(["build", "-", "-", "-o", str(tmp_path / "c")], capsys)
    assert (code, err) == (2, "cliquegen: error: - (standard input) can be read only once\n")


def test_class_and_class_dash_cannot_share_a_file(tmp_path: Path, capsys) -> None:
    keyword = tmp_path / "class.yaml"
    keyword.write_text(TINY.replace("name: tiny", "name: class"))
    dashed = tmp_path / "dashed.yaml"
    dashed.write_text(TINY.replace("name: tiny", "name: class-"))
    assert run(["build", str(keyword), "-o", str(tmp_path / "out")], capsys)[0] == 0
    code, _, err = run(["build", str(dashed), "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and "not ending with '-'" in err
    assert (tmp_path / "out" / "class_.py").read_text().startswith('"""class: ')


def test_a_hub_config_whose_spec_is_a_path_reads_no_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text(TINY)
    with pytest.raises(SpecError, match="a spec is a mapping"):
        load_spec_text(str(path))
    with pytest.raises(SpecError, match="expected the spec's YAML text, got a mapping"):
        load_spec_text({"name": "tiny"})


def test_timm_builds_from_spec_text_only(tmp_path: Path) -> None:
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed")
    import torchvision_stand_in

    installed = torchvision_stand_in.install()
    try:
        import timm
    finally:
        torchvision_stand_in.remove(installed)
    path = tmp_path / "secret.yaml"
    path.write_text(TINY)
    with pytest.raises(SpecError, match="a spec is a mapping"):
        timm.create_model("cliquegen_spec", spec=str(path))
    assert type(timm.create_model("cliquegen_spec", spec=TINY)).__name__ == "Tiny"


def test_sample_takes_ascii_digits_only(tiny: Path, tmp_path: Path, capsys) -> None:
    weights = tmp_path / "w.pt"
    torch.save(checkpoint(tiny), weights)
    code, _, err = run(
        ["analyze", "features", str(tiny), "--weights", str(weights), "--sample", "digits:²", "--json"],
        capsys,
    )
    assert code == 2 and "expected DATA:INDEX" in err


def test_num_classes_that_does_not_fit_names_the_flag(tiny: Path, tmp_path: Path, capsys) -> None:
    argv = [
        "train",
        str(tiny),
        "--data",
        "digits",
        "--epochs",
        "1",
        "--num-classes",
        "1",
        "--out",
        str(tmp_path / "r"),
    ]
    code, _, err = run(argv, capsys)
    assert (code, err) == (
        2,
        "cliquegen: error: --num-classes 1 does not fit digits, which has 10 classes; pass --num-classes 10 "
        "(spec 'tiny' itself has num_classes: 10)\n",
    )


def test_export_weights_takes_a_training_checkpoint(tmp_path: Path, capsys) -> None:
    from test_torchvision_weights import TINY as DENSENET

    spec = tmp_path / "dn.yaml"
    spec.write_text(DENSENET)
    weights = tmp_path / "last.pt"
    model = create_model(load_spec(spec))
    info = model_info(load_spec(spec))
    torch.save({"model": model.state_dict(), "info": info.to_dict(), "epoch": 1, "optimizer": {}}, weights)
    code, out, err = run(
        [
            "export-weights",
            str(weights),
            "--spec",
            str(spec),
            "--to",
            "torchvision",
            "-o",
            str(tmp_path / "tv.pt"),
        ],
        capsys,
    )
    assert (code, err) == (0, "")
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    run(
        [
            "export-weights",
            str(plain),
            "--spec",
            str(spec),
            "--to",
            "torchvision",
            "-o",
            str(tmp_path / "tv2.pt"),
        ],
        capsys,
    )
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            torch.load(tmp_path / "tv.pt").values(), torch.load(tmp_path / "tv2.pt").values(), strict=True
        )
    )
