"""The repository's Dockerfile (alexnet-serve's image), read as text: no Docker needed, no torch.

It must build the torch-free serving image from the source tree: a slim Python 3.11 base, the
package with its `serve` extra, a non-root user, a health check, alexnet-serve as the entry point,
only files that exist (and that .dockerignore keeps) copied in; and `alexnet-serve --print-manifest`
must name the image its build line makes.
"""

from __future__ import annotations

import configparser
import fnmatch
import importlib.metadata
import json
import re
import shlex
from pathlib import Path

import pytest

from runtime.server.manifest import DEFAULT_IMAGE, Deployment, build_command, inference_service

pytestmark = pytest.mark.runtime
ROOT = Path(__file__).resolve().parent.parent


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, its arguments) in order; comments dropped, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def arguments(kind: str) -> list[str]:
    return [args for name, args in instructions() if name == kind]


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def test_slim_python_311_base_non_root_user_and_entry_point():
    assert instructions()[0][0] == "FROM" and re.fullmatch(r"python:3\.11-slim\S*", arguments("FROM")[0])
    user = arguments("USER")[-1].split(":")[0]
    assert user not in ("root", "0", ""), user
    assert json.loads(arguments("ENTRYPOINT")[-1]) == ["alexnet-serve"]
    assert {"8080", "8081"} <= set(" ".join(arguments("EXPOSE")).split())  # alexnet-serve's REST and gRPC ports
    (check,) = arguments("HEALTHCHECK")
    assert "/v2/health/ready" in check and "urllib.request" in check and "curl" not in check


def test_the_serve_extra_is_installed_and_pulls_no_torch():
    installs = [run for run in arguments("RUN") if "pip install" in run]
    assert any("'.[serve]'" in run and "--no-cache-dir" in run for run in installs), installs
    serve = setup_cfg()["options.extras_require"]["serve"]
    assert not re.search(r"^\s*torch\b", serve, re.M) and "alexnet-deploy[" not in serve
    try:  # what kserve itself requires, where it is installed
        requirements = importlib.metadata.requires("kserve") or []
    except importlib.metadata.PackageNotFoundError:
        return
    names = {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower() for r in requirements if "extra ==" not in r}
    assert not names & {"torch", "torchvision"}, names


def copied_sources() -> list[str]:
    sources = []
    for args in arguments("COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        sources += words[:-1]  # the last is the destination
    return sources


def test_every_copied_source_exists_is_kept_by_dockerignore_and_the_wheel_has_what_it_needs():
    ignored = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip() and p[0] != "#"]
    sources = copied_sources()
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), f"COPY {source}: in .dockerignore"
    for ignored_dir in (".venv", ".git", "runs", "benchmarks/results", "tests"):
        assert ignored_dir in ignored
    config = setup_cfg()
    packages = {p.strip().split(".")[0] for p in config["options.packages.find"]["include"].split() if p.strip()}
    assert packages <= {s.rstrip("/").removeprefix("./") for s in sources}, packages
    needed = {"setup.cfg", "pyproject.toml"}
    if "file: README.md" in config["metadata"]["long_description"]:  # read when the wheel is built
        needed.add("README.md")
    assert needed <= set(sources)


def test_the_manifest_names_the_image_the_dockerfile_builds():
    text = (ROOT / "Dockerfile").read_text()
    documented = re.findall(r"docker build -t (\S+) \.", text)
    assert documented and documented[0] == DEFAULT_IMAGE and build_command() in text
    manifest = inference_service(Deployment("alexnet", "best.onnx", "s3://b/m/", DEFAULT_IMAGE, ()))
    assert f'image: "{DEFAULT_IMAGE}"' in manifest and build_command(DEFAULT_IMAGE) in manifest
    assert build_command() in (ROOT / "README.md").read_text()  # the serving section says how to make it
