"""alexnet-export --format triton: the repository layout, config.pbtxt against the ONNX model, labels,
the metadata parameter, int8, atomic replacement beside other models, and the validator's catches.

tritonclient.grpc is imported here (its model_config_pb2); kserve never is: both register the same
protobuf symbols, which one process cannot hold twice.
"""

from __future__ import annotations

import os
import shutil
import sys

import onnx
import pytest
from builders import CLASSES
from click.testing import CliRunner
from google.protobuf import text_format

from export import to_triton
from export.cli import main
from export.common import ExportError
from runtime.integrity import onnx_sha256
from runtime.metadata import METADATA_KEY, ArtifactMetadata

pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="--format triton needs tritonclient ([export])")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(result):
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture(scope="module")
def ckpt(cifar_checkpoint):
    return cifar_checkpoint  # the session's (conftest.py): read-only here


@pytest.fixture(scope="module")
def exported(ckpt, tmp_path_factory):
    """One fp32 export, validated, into a repository root that does not exist yet: (result, repo)."""
    repo = tmp_path_factory.mktemp("triton") / "repo"
    result = run("--format", "triton", ckpt, "-o", repo)
    assert result.exit_code == 0, result.output
    return result, repo


def read_config(model_dir):
    return text_format.Parse((model_dir / "config.pbtxt").read_text(encoding="utf-8"), pb2.ModelConfig())


def onnx_metadata_text(model_dir):
    proto = onnx.load(str(model_dir / "1" / "model.onnx"), load_external_data=False)
    return next(p.value for p in proto.metadata_props if p.key == METADATA_KEY)


def test_layout_and_validation(exported):
    result, repo = exported
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    assert files == ["alexnet/1/model.onnx", "alexnet/config.pbtxt", "alexnet/labels.txt"]
    assert f"wrote {repo / 'alexnet'} (triton, fp32" in result.output
    assert "triton: PASS" in result.output and "top-1 agreement 100.0%" in result.output
    assert "config.pbtxt and labels.txt match 1/model.onnx" in result.output


def test_config_matches_the_onnx_model(exported):
    model_dir = exported[1] / "alexnet"
    config = read_config(model_dir)
    graph = onnx.load(str(model_dir / "1" / "model.onnx"), load_external_data=False).graph
    assert (config.name, config.platform, config.max_batch_size) == ("alexnet", "onnxruntime_onnx", 32)
    for configured, value in [(config.input, graph.input), (config.output, graph.output)]:
        [tensor], [onnx_value] = configured, value
        dims = onnx_value.type.tensor_type.shape.dim
        assert tensor.name == onnx_value.name and tensor.data_type == pb2.TYPE_FP32
        assert onnx_value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        assert dims[0].dim_param and not dims[0].HasField("dim_value")  # the batch is free: Triton batches
        assert list(tensor.dims) == [d.dim_value for d in dims[1:]]
    assert list(config.input[0].dims) == [3, 32, 32] and list(config.output[0].dims) == [len(CLASSES)]
    assert config.output[0].label_filename == "labels.txt"
    assert config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds > 0
    [group] = config.instance_group
    assert (group.count, group.kind) == (1, pb2.ModelInstanceGroup.KIND_CPU)


def test_labels_and_the_metadata_parameter(exported):
    model_dir = exported[1] / "alexnet"
    assert (model_dir / "labels.txt").read_text(encoding="utf-8") == "".join(f"{c}\n" for c in CLASSES)
    text = read_config(model_dir).parameters[METADATA_KEY].string_value
    assert text == onnx_metadata_text(model_dir)  # exactly the ONNX file's string
    metadata = ArtifactMetadata.from_json(text)
    assert metadata == ArtifactMetadata.from_json(onnx_metadata_text(model_dir))
    assert metadata.class_names == tuple(CLASSES) and metadata.input_shape == (None, 3, 32, 32)
    # The repository's model.onnx is an ONNX export like any other: its weights hash is recorded.
    assert metadata.weights_sha256 == onnx_sha256(model_dir / "1" / "model.onnx")


def test_int8_is_gated_like_onnx_int8(ckpt, tmp_path):
    repo = tmp_path / "repo"
    args = ["--calibration", "synthetic", "--calibration-size", "8", "--gate-size", "20", "--target-cpu", "vnni"]
    result = run("--format", "triton", "--precision", "int8", ckpt, "-o", repo, "--triton-name", "alexnet-int8", *args)
    assert result.exit_code == 0, result.output
    assert "gate [all layers int8]: PASS" in result.output and "triton: PASS" in result.output
    model_dir = repo / "alexnet-int8"
    metadata = ArtifactMetadata.from_json(read_config(model_dir).parameters[METADATA_KEY].string_value)
    assert metadata.precision == "int8" and metadata.quantization["gate"]["passed"]
    assert read_config(model_dir).name == "alexnet-int8" and to_triton.repository_problems(model_dir) == []


@pytest.mark.parametrize("name", ["", ".hidden", "..", "a/b", "../up", "sp ace", "x" * 129, "caf\u00e9"])
def test_bad_triton_name_exits_2(ckpt, tmp_path, name):
    result = run("--format", "triton", ckpt, "-o", tmp_path / "repo", "--triton-name", name)
    assert result.exit_code == 2
    assert "--triton-name" in one_error_line(result) and not (tmp_path / "repo").exists()


def test_reexport_replaces_the_model_and_keeps_the_others(ckpt, exported, tmp_path, monkeypatch):
    """Atomic replacement of <repo>/<name> only. The ONNX export is the module's (copied): what is
    tested is the repository writing; the real export is tested above."""
    import export

    model, real_export = exported[1] / "alexnet" / "1" / "model.onnx", export.export_artifact

    def copied_onnx(checkpoint, fmt, output, **options):
        if fmt == "onnx":  # the repository's model
            return shutil.copyfile(model, output)
        return real_export(checkpoint, fmt, output, **options)

    monkeypatch.setattr(export, "export_artifact", copied_onnx)
    repo = tmp_path / "repo"
    (repo / "other" / "1").mkdir(parents=True)
    (repo / "other" / "config.pbtxt").write_text('name: "other"\n')
    (repo / "other" / "1" / "model.onnx").write_bytes(b"someone else's model")
    (repo / "alexnet" / "1").mkdir(parents=True)
    (repo / "alexnet" / "config.pbtxt").write_text('name: "alexnet"\n')
    (repo / "alexnet" / "2").mkdir()  # an old version folder: the new model replaces the whole folder
    before = {p: p.read_bytes() for p in (repo / "other").rglob("*") if p.is_file()}
    result = run("--format", "triton", ckpt, "-o", repo)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in repo.iterdir()) == ["alexnet", "other"]  # no temp folder left
    assert {p: p.read_bytes() for p in (repo / "other").rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in (repo / "alexnet").iterdir()) == ["1", "config.pbtxt", "labels.txt"]
    assert read_config(repo / "alexnet").platform == "onnxruntime_onnx"


def test_a_folder_that_is_not_a_model_is_never_replaced(ckpt, tmp_path):
    precious = tmp_path / "repo" / "alexnet" / "notes.txt"
    precious.parent.mkdir(parents=True)
    precious.write_text("not a model")
    result = run("--format", "triton", ckpt, "-o", tmp_path / "repo")
    assert result.exit_code == 1 and "is not a Triton model" in one_error_line(result)
    assert sorted(p.name for p in precious.parent.iterdir()) == ["notes.txt"]


def test_output_that_is_a_file_is_an_error(ckpt, tmp_path):
    (tmp_path / "repo").write_text("a file")
    result = run("--format", "triton", ckpt, "-o", tmp_path / "repo")
    assert result.exit_code == 1 and "not a directory" in one_error_line(result)


def test_one_precision_per_model_and_all_excludes_triton(ckpt, tmp_path):
    result = run("--format", "triton", "--precisions", "fp32,int8", ckpt, "-o", tmp_path)
    assert result.exit_code == 2 and "--format triton writes one model" in result.output
    assert "triton (Triton repository) only on its own" in " ".join(run("--help").output.split())
    assert list(tmp_path.iterdir()) == []


def test_default_repository_is_beside_the_checkpoint():
    assert to_triton.resolve_repository("runs/best.pth", None) == to_triton.Path("runs/best-triton")
    assert to_triton.resolve_repository("runs/best.pth", None, "int8") == to_triton.Path("runs/best-int8-triton")
    assert to_triton.resolve_repository("runs/best.pth", "repo") == to_triton.Path("repo")


def test_fixed_batch_config_has_full_dims_and_no_batcher():
    from runtime.preprocess import PreprocessSpec

    spec = PreprocessSpec(resize=32, crop=32)
    metadata = ArtifactMetadata(("a", "b"), spec, {}, input_shape=(4, 3, 32, 32))
    config = text_format.Parse(to_triton.config_text("m", metadata, metadata.to_json()), pb2.ModelConfig())
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [4, 3, 32, 32] and list(config.output[0].dims) == [4, 2]


def test_class_names_with_line_breaks_are_refused(tmp_path):
    with pytest.raises(ExportError, match="line break"):
        to_triton._write_labels(tmp_path / "labels.txt", ("ok", "two\nlines"))


def test_missing_tritonclient_is_a_one_line_error(ckpt, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)  # import fails as if not installed
    result = run("--format", "triton", ckpt, "-o", tmp_path / "repo")
    assert result.exit_code == 1 and "pip install 'alexnet-deploy[export]'" in one_error_line(result)
    assert list(tmp_path.iterdir()) == []


def _dims_3_31(config):
    config.input[0].dims[1] = 31


def _fixed_batch(config):
    config.max_batch_size = 0


def _other_metadata(config):
    config.parameters[METADATA_KEY].string_value = config.parameters[METADATA_KEY].string_value.replace("circle", "c")


@pytest.mark.parametrize(
    "tamper,message",
    [
        (_dims_3_31, "input 'input' dims [3, 31, 32] are not the ONNX model's [3, 32, 32]"),
        (_fixed_batch, "dynamic_batching needs max_batch_size > 0"),
        (_other_metadata, "parameter 'alexnet_deploy' is not the ONNX model's"),
        (lambda config: setattr(config, "name", "renamed"), "config name 'renamed' is not the folder's name"),
        ("labels", "labels.txt holds 5 lines that are not the model's 5 class names"),
        ("garbage", "cannot be read as a Triton model config"),
    ],
)
def test_validator_catches_a_mismatching_repository(ckpt, exported, tmp_path, tamper, message):
    model_dir = tmp_path / "alexnet"
    shutil.copytree(exported[1] / "alexnet", model_dir, copy_function=os.link)  # links: no 230 MB copy
    config_path = model_dir / "config.pbtxt"
    if tamper == "labels":
        (model_dir / "labels.txt").unlink()  # a new file, not the shared link
        (model_dir / "labels.txt").write_text("".join(f"{c}\n" for c in reversed(CLASSES)))
    elif tamper == "garbage":
        config_path.unlink()
        config_path.write_text("input { dims: [3, 32 }")
    else:
        config = read_config(model_dir)
        tamper(config)
        config_path.unlink()
        config_path.write_text(text_format.MessageToString(config))
    result = to_triton.validate_repository(model_dir, ckpt)
    assert not result.passed and message in result.summary()
    assert len(result.summary().splitlines()) == 1
