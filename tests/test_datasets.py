"""CIFAR-10, CIFAR-100 and SVHN in their distribution formats (tiny files built here, never
downloaded): reading, training, eval, predict with class names, and export with metadata."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from cliquegen import cli, load_spec
from cliquegen.data.base import padded_random_crop
from cliquegen.data.sets import load_data
from cliquegen.errors import UsageError

pytest.importorskip("scipy.io")
image_module = pytest.importorskip("PIL.Image")

RGB32 = """\
name: tiny-rgb
description: "a tiny clique network for 32x32 RGB images"
input: {channels: 3, height: 32, width: 32}
num_classes: 10
stem: {kind: cifar, channels: 8}
defaults: {dropout: 0.0, schedule: {stages: 2}}
blocks:
  - {layers: 2, channels: 6}
"""
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def images_for(labels: np.ndarray, seed: int) -> np.ndarray:
    """(N, 32, 32, 3) uint8 images whose red channel tells the class (learnable in one epoch)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, size=(len(labels), 32, 32, 3), dtype=np.uint8)
    pixels[..., 0] += (labels * 19).astype(np.uint8)[:, None, None]
    return pixels


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """The CIFAR "python version" row layout: 1024 red, then 1024 green, then 1024 blue values."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072).copy()


def dump(path: Path, value: dict) -> None:
    path.write_bytes(pickle.dumps(value, protocol=2))


def make_cifar10(root: Path, train_per_batch: int = 8, test: int = 10) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    dump(folder / "batches.meta", {"label_names": CIFAR10_NAMES, "num_cases_per_batch": train_per_batch})
    for k in range(1, 6):
        labels = np.arange(train_per_batch) % 10
        data = cifar_rows(images_for(labels, k))
        dump(
            folder / f"data_batch_{k}",
            {
                "batch_label": f"training batch {k} of 5",
                "labels": labels.tolist(),
                "data": data,
                "filenames": [f"{i}.png" for i in range(len(labels))],
            },
        )
    labels = np.arange(test) % 10
    dump(folder / "test_batch", {"labels": labels.tolist(), "data": cifar_rows(images_for(labels, 9))})
    return root


def make_cifar100(root: Path, train: int = 40, test: int = 20) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    fine = [f"class{k:02d}" for k in range(100)]
    dump(folder / "meta", {"fine_label_names": fine, "coarse_label_names": [f"super{k}" for k in range(20)]})
    for name, count, seed in (("train", train, 1), ("test", test, 2)):
        labels = (np.arange(count) * 7) % 100
        dump(
            folder / name,
            {
                "fine_labels": labels.tolist(),
                "coarse_labels": (labels // 5).tolist(),
                "data": cifar_rows(images_for(labels % 10, seed)),
            },
        )
    return root


def make_svhn(root: Path, train: int = 30, test: int = 10, extra: int = 0) -> Path:
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    for name, count, seed in (("train", train, 1), ("test", test, 2), ("extra", extra, 3)):
        if not count:
            continue
        digits = np.arange(count) % 10
        labels = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)  # 10 is the digit 0
        X = images_for(digits, seed).transpose(1, 2, 3, 0)  # (32, 32, 3, N) as distributed
        scipy.io.savemat(root / f"{name}_32x32.mat", {"X": X, "y": labels})
    return root


def spec_file(tmp_path: Path, classes: int = 10) -> Path:
    path = tmp_path / f"tiny-rgb-{classes}.yaml"
    path.write_text(RGB32.replace("num_classes: 10", f"num_classes: {classes}"))
    return path


def test_cifar10_reads_the_python_version_format(tmp_path: Path) -> None:
    root = make_cifar10(tmp_path / "c10")
    data = load_data(f"cifar10:{root}", load_spec(spec_file(tmp_path)))
    assert data.classes == CIFAR10_NAMES
    assert (len(data.train), len(data.test)) == (40, 10)
    expected = images_for(np.arange(8) % 10, 1)[3]  # data_batch_1, image 3: (32, 32, 3)
    assert torch.equal(data.train.images[3], torch.from_numpy(expected).permute(2, 0, 1))  # R, G, B planes
    assert int(data.train.labels[3]) == 3
    image, label = data.train[3]
    mean, std = torch.tensor(data.mean)[:, None, None], torch.tensor(data.std)[:, None, None]
    assert torch.allclose(image * std + mean, data.train.images[3].float() / 255, atol=1e-6)
    every = data.train.images.double() / 255
    assert data.mean == pytest.approx(every.mean(dim=(0, 2, 3)).tolist())
    assert data.std == pytest.approx(every.std(dim=(0, 2, 3)).tolist())
    # the folder itself works too, not only its parent
    assert load_data(f"cifar10:{root / 'cifar-10-batches-py'}", load_spec(spec_file(tmp_path))).classes


def test_cifar_pickles_cannot_run_code(tmp_path: Path) -> None:
    root = make_cifar10(tmp_path / "c10")
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (root / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Exploit()}, protocol=2))
    refusal = r"not a CIFAR batch: it names '(posix|os)\.system'.*nothing in the file was run"
    with pytest.raises(UsageError, match=refusal):
        load_data(f"cifar10:{root}", load_spec(spec_file(tmp_path)))
    assert not marker.exists()


def test_a_genuine_batch_with_an_empty_bytes_value_is_read(tmp_path: Path) -> None:
    """Python 3 pickles b"" in protocol 2 as a call of bytes(): a genuine file, not an attack."""
    root = make_cifar10(tmp_path / "c10")
    batch = root / "cifar-10-batches-py" / "test_batch"
    labels = np.arange(10) % 10
    value = {"batch_label": b"", "labels": labels.tolist(), "data": cifar_rows(images_for(labels, 9))}
    batch.write_bytes(pickle.dumps(value, protocol=2))
    assert b"bytes" in batch.read_bytes()
    assert len(load_data(f"cifar10:{root}", load_spec(spec_file(tmp_path))).test) == 10


def test_damaged_cifar_files_are_usage_errors(tmp_path: Path) -> None:
    root = make_cifar10(tmp_path / "c10")
    test_batch = root / "cifar-10-batches-py" / "test_batch"
    test_batch.write_bytes(test_batch.read_bytes()[:100])
    with pytest.raises(UsageError, match=r"test_batch: not a CIFAR batch: .*\(truncated\?\)"):
        load_data(f"cifar10:{root}", load_spec(spec_file(tmp_path)))
    with pytest.raises(UsageError, match="pass --download"):
        load_data(f"cifar10:{tmp_path / 'nothing'}", load_spec(spec_file(tmp_path)))


def test_svhn_reads_mat_files_with_10_as_zero_and_extra(tmp_path: Path) -> None:
    root = make_svhn(tmp_path / "svhn", train=20, test=10, extra=10)
    data = load_data(f"svhn:{root}", load_spec(spec_file(tmp_path)))
    assert data.classes == [str(k) for k in range(10)]
    assert (len(data.train), len(data.test)) == (30, 10)  # train + extra
    assert data.train.labels[:10].tolist() == list(range(10))
    expected = images_for(np.arange(20) % 10, 1)[4]
    assert torch.equal(data.train.images[4], torch.from_numpy(expected).permute(2, 0, 1))


def test_standard_augmentation_pads_crops_and_flips() -> None:
    image = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(2, 5, 6) + 1
    torch.manual_seed(0)
    crops = [padded_random_crop(image, 4) for _ in range(50)]
    assert all(c.shape == image.shape for c in crops)
    assert any(torch.equal(c, image) for c in crops) or all(not torch.equal(c, image) for c in crops)
    assert any((c == 0).any() for c in crops)  # some crops reach into the zero padding
    for crop in crops:  # every crop is a shifted window of the padded image
        padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
        windows = [padded[:, t : t + 5, s : s + 6] for t in range(9) for s in range(9)]
        assert any(torch.equal(crop, w) for w in windows)


def png(path: Path, pixels: np.ndarray) -> Path:
    image_module.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("kind", ["cifar10", "cifar100", "svhn"])
def test_train_eval_predict_export(kind: str, tmp_path: Path, capsys) -> None:
    maker = {"cifar10": make_cifar10, "cifar100": make_cifar100, "svhn": make_svhn}[kind]
    root = maker(tmp_path / kind)
    classes = 100 if kind == "cifar100" else 10
    spec = spec_file(tmp_path, classes)
    run = tmp_path / "run"
    argv = ["train", spec, "--data", f"{kind}:{root}", "--epochs", "1", "--batch-size", "16", "--out", run]
    assert cli.main([str(a) for a in argv]) == 0
    best = torch.load(run / "best.pt", weights_only=True)
    info = best["info"]
    data = load_data(f"{kind}:{root}", load_spec(spec))
    assert info["classes"] == data.classes and info["mean"] == data.mean and info["std"] == data.std
    assert info["input_size"] == [3, 32, 32] and info["spec_text"] == spec.read_text()
    assert info["spec_sha256"] == __import__("hashlib").sha256(spec.read_bytes()).hexdigest()
    capsys.readouterr()

    assert (
        cli.main(["eval", str(spec), "--weights", str(run / "best.pt"), "--data", f"{kind}:{root}", "--json"])
        == 0
    )
    scores = json.loads(capsys.readouterr().out)
    assert scores["images"] == len(data.test) and 0 <= scores["top1"] <= scores["top5"] <= 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert scores["top1"] == pytest.approx(metrics["history"][-1]["test_accuracy"])
    assert scores["loss"] == pytest.approx(metrics["history"][-1]["test_loss"], rel=1e-5)

    image = png(tmp_path / "x.png", images_for(np.array([3]), 5)[0])
    assert (
        cli.main(
            ["predict", str(spec), "--weights", str(run / "best.pt"), str(image), "--top-k", "3", "--json"]
        )
        == 0
    )
    top = json.loads(capsys.readouterr().out)[0]["top"]
    assert len(top) == 3 and all(t["class"] == data.classes[t["index"]] for t in top)
    assert sum(t["probability"] for t in top) <= 1 + 1e-6

    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    output = tmp_path / "model.onnx"
    export = ["export", str(spec), "--weights", str(run / "best.pt"), "--format", "onnx", "-o", str(output)]
    assert cli.main(export) == 0
    props = {p.key: p.value for p in onnx.load(output).metadata_props}
    assert json.loads(props["classes"]) == data.classes
    assert json.loads(props["mean"]) == data.mean and json.loads(props["std"]) == data.std
    assert props["spec_sha256"] == info["spec_sha256"] and json.loads(props["input_size"]) == [3, 32, 32]


def test_download_checks_the_md5_and_unpacks_all_or_nothing(tmp_path: Path, monkeypatch) -> None:
    """--download through urllib, here from a file:// URL (the tests never use the network)."""
    import hashlib
    import tarfile

    from cliquegen.data import archives as _datasets
    from cliquegen.data.sets import fetch_data

    source = make_cifar10(tmp_path / "source")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    target = tmp_path / "data"

    monkeypatch.setitem(_datasets.DOWNLOADS, "cifar10", [(archive.as_uri(), "0" * 32)])
    with pytest.raises(UsageError, match=f"the download's MD5 is {md5}, not the published 0{{32}}"):
        fetch_data(f"cifar10:{target}")
    assert list(target.iterdir()) == []  # nothing half-unpacked

    monkeypatch.setitem(_datasets.DOWNLOADS, "cifar10", [(archive.as_uri(), md5)])
    fetch_data(f"cifar10:{target}")
    assert sorted(p.name for p in target.iterdir()) == ["cifar-10-batches-py"]
    assert load_data(f"cifar10:{target}", load_spec(spec_file(tmp_path))).classes == CIFAR10_NAMES
    with pytest.raises(UsageError, match="--download fetches"):
        fetch_data("digits")


def test_exported_program_and_onnxruntime_see_the_metadata(tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from cliquegen.interop.export import export_model, read_metadata
    from cliquegen.train.loop import TrainConfig, run

    root = make_cifar10(tmp_path / "c10")
    spec = spec_file(tmp_path)
    result = run(TrainConfig(spec=str(spec), data=f"cifar10:{root}", out=str(tmp_path / "run"), epochs=1))
    program = export_model(str(spec), "exported-program", tmp_path / "m.pt2", weights=result.best)
    metadata = read_metadata(program)
    assert json.loads(metadata["classes"]) == CIFAR10_NAMES and json.loads(metadata["input_size"]) == [
        3,
        32,
        32,
    ]
    onnx_file = export_model(str(spec), "onnx", tmp_path / "m.onnx", weights=result.best)
    custom = onnxruntime.InferenceSession(str(onnx_file)).get_modelmeta().custom_metadata_map
    assert custom == read_metadata(onnx_file) and custom["mean"] == metadata["mean"]


def test_imagenet_layout_with_standard_augmentation(tmp_path: Path) -> None:
    root = tmp_path / "imagenet"
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("val", 2)):
        for name in ("n01440764", "n01443537"):
            (root / split / name).mkdir(parents=True)
            for k in range(count):
                png(root / split / name / f"{k}.jpeg", rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    spec = load_spec(RGB32.replace("num_classes: 10", "num_classes: 2"))
    data = load_data(f"folder:{root}", spec, augment="standard")
    assert data.classes == ["n01440764", "n01443537"] and (len(data.train), len(data.test)) == (6, 4)
    assert data.train.train_augment and data.test.eval_crop and not data.test.train_augment
    torch.manual_seed(0)
    crops = torch.stack([data.train[0][0] for _ in range(4)])
    assert crops.shape == (4, 3, 32, 32) and not torch.equal(crops[0], crops[1])  # random crops
    assert torch.equal(data.test[0][0], data.test[0][0])  # the centre crop is fixed
    plain = load_data(f"folder:{root}", spec)
    assert not plain.train.train_augment and plain.mean == data.mean  # statistics of the plain images
