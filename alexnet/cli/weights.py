"""alexnet-weights: download published AlexNet weights, and check any weights file by its SHA-256.

Hashing only: nothing here loads a file with torch, so `verify` runs offline on any file. A
download goes to a temp file beside the destination and is renamed into place only once its
SHA-256 starts with the published prefix (runtime.outputs.atomic_write): a failed or damaged
download leaves nothing behind and an earlier file as it was.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from runtime.cliutil import handle_errors
from runtime.errors import DeployError
from runtime.fileio import file_sha256
from runtime.options import group, output_option, quiet_option
from runtime.output_paths import OutputError, plan_write
from runtime.outputs import atomic_write

TIMEOUT_S = 30  # connecting, and each read: a stalled server fails instead of hanging
MAX_DOWNLOAD_BYTES = 300_000_000  # the torchvision file is 244 MB; anything much larger is not it
BLOCK = 1 << 20
# torch.hub's naming: NAME-<first hex digits of the SHA-256>.EXT (alexnet-owt-7be5be79.pth)
_NAME_PREFIX = re.compile(r"-([0-9a-fA-F]{8,64})(?:\..*)?")
_HEX_PREFIX = re.compile(r"[0-9a-fA-F]{8,64}")


class WeightsError(DeployError):
    """A download that failed or was refused, or a file whose SHA-256 is not the expected one."""


@dataclass(frozen=True)
class KnownWeights:
    """Published weights: where they are and what they are. The file name is the URL's last part,
    and the SHA-256 prefix the part of that name after its last '-'."""

    url: str
    what: str

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str:
        prefix = name_prefix(self.file_name)
        assert prefix is not None, self.url
        return prefix


# The one table of published weights: `fetch NAME` downloads them, `verify` names them.
KNOWN_WEIGHTS = {
    "torchvision": KnownWeights(
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "torchvision's AlexNet trained on ImageNet (variant torchvision, 1000 classes, 244 MB)",
    ),
}


def name_prefix(file_name: str) -> str | None:
    """The SHA-256 prefix a torch.hub-style name carries (alexnet-owt-7be5be79.pth: 7be5be79), or None."""
    match = _NAME_PREFIX.fullmatch(file_name[file_name.rfind("-") :]) if "-" in file_name else None
    return match.group(1).lower() if match else None


def known_names(sha256: str) -> list[str]:
    """The names of the published weights whose prefix `sha256` starts with."""
    return [name for name, known in KNOWN_WEIGHTS.items() if sha256.startswith(known.sha256_prefix)]


def sha256_of(path: Path) -> str:
    """The SHA-256 of the regular file at `path`; WeightsError (one line) for anything else."""
    try:
        return file_sha256(path)
    except OSError as exc:
        raise WeightsError(f"cannot read {path}: {exc.strerror}" if exc.strerror else str(exc)) from None


def _reason(exc: BaseException) -> str:
    """Why a network call failed, in a few words."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer in {TIMEOUT_S} s"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _open(url: str) -> Any:
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT_S)  # noqa: S310 (the table's https URL, or --url)
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError and HTTPError are OSErrors
        raise WeightsError(
            f"could not reach {url} ({_reason(exc)}); download that file by hand and check it with "
            "`alexnet-weights verify FILE`"
        ) from None


def _declared_size(response: Any, url: str) -> int | None:
    try:
        size = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    if size > MAX_DOWNLOAD_BYTES:
        raise WeightsError(f"{url} is {size / 1e6:.0f} MB, more than these weights can be: refused")
    return size


def _read(response: Any, url: str) -> bytes:
    try:
        return response.read(BLOCK)
    except (OSError, http.client.HTTPException) as exc:
        raise WeightsError(f"the download of {url} failed ({_reason(exc)}); nothing was saved") from None


def _save(response: Any, tmp: str, url: str, size: int | None, progress: bool) -> tuple[str, int]:
    """Copy the response to `tmp`, at most MAX_DOWNLOAD_BYTES; (its SHA-256, its size)."""
    from tqdm import tqdm

    digest, done = hashlib.sha256(), 0
    bar = tqdm(
        total=size, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, disable=None if progress else True
    )
    with open(tmp, "wb") as out, bar:
        while block := _read(response, url):
            done += len(block)
            if done > MAX_DOWNLOAD_BYTES:
                raise WeightsError(f"{url} sent more than {MAX_DOWNLOAD_BYTES / 1e6:.0f} MB: refused, nothing saved")
            digest.update(block)
            out.write(block)
            bar.update(len(block))
    if size is not None and done != size:
        raise WeightsError(f"the download of {url} stopped at {done} of {size} bytes; nothing was saved")
    return digest.hexdigest(), done


def download(url: str, dest: Path, prefix: str, progress: bool = True) -> tuple[str, int]:
    """Download `url` to `dest` through a temp file beside it, renamed into place only if its
    SHA-256 starts with `prefix`; (the SHA-256, the size). WeightsError or OutputError, one line."""
    done: dict[str, Any] = {}

    def write(tmp: str) -> None:
        sha, size = _save(response, tmp, url, declared, progress)
        if not sha.startswith(prefix):
            raise WeightsError(
                f"the file from {url} has SHA-256 {sha}, not the published {prefix}...: damaged or other weights; "
                "nothing was saved"
            )
        done.update(sha=sha, size=size)

    with _open(url) as response:
        declared = _declared_size(response, url)
        atomic_write(dest, write, expected_bytes=declared, what="weights")
    return done["sha"], done["size"]


def _destination(output: Path | None, file_name: str) -> Path:
    """-o as given, or the published name in it if it is a folder, or in the current folder."""
    dest = output / file_name if output is not None and output.is_dir() else output or Path(file_name)
    if plan_write(dest, "weights")[1]:  # a device or FIFO: a download is a file
        raise OutputError(dest, "it is a device or pipe, not a file", "weights")
    return dest


@group()
def main() -> None:
    """Get the published AlexNet weights, and check weights files by their SHA-256.

    \b
    Examples:
      alexnet-weights fetch torchvision              # ./alexnet-owt-7be5be79.pth, checked
      alexnet-weights verify alexnet-owt-7be5be79.pth
      alexnet-weights verify model.pth --sha256 7be5be79
    """


@main.command()
@click.argument("name", type=click.Choice(sorted(KNOWN_WEIGHTS)))
@output_option("File to write, or a folder to save them in. Default: the published name, in the current folder.")
@click.option("--url", default=None, help="Download from this mirror instead (still checked against the prefix).")
@quiet_option()
@handle_errors
def fetch(name: str, output: Path | None, url: str | None, quiet: bool) -> None:
    """Download published weights (torchvision: ImageNet) and check their SHA-256 before saving them."""
    known = KNOWN_WEIGHTS[name]
    dest, prefix = _destination(output, known.file_name), known.sha256_prefix
    if dest.is_file():
        sha = sha256_of(dest)
        if sha.startswith(prefix):
            click.echo(f"{dest}: already there (SHA-256 {sha}): not downloaded again")
            return
        click.echo(f"{dest}: SHA-256 {sha} is not the published {prefix}...: downloading it again", err=True)
    sha, size = download(url or known.url, dest, prefix, progress=not quiet)
    click.echo(f"saved {dest}: {size / 1e6:.1f} MB, SHA-256 {sha} (published: {prefix}...), {known.what}")


def _hex_prefix(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _HEX_PREFIX.fullmatch(value):
        raise click.BadParameter("8 to 64 hex digits, the start of the file's SHA-256")
    return value.lower() if value else None


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--sha256", "expected", metavar="PREFIX", callback=_hex_prefix, help="Expected SHA-256 or its start.")
@handle_errors
def verify(file: Path, expected: str | None) -> None:
    """Check FILE's SHA-256 against the prefix in its name (NAME-<hex>.pth, as torch.hub names
    files) or --sha256. Offline: nothing is downloaded or loaded."""
    prefix = expected or name_prefix(file.name)
    if prefix is None:
        raise click.UsageError(f"{file.name} carries no SHA-256 prefix (NAME-<hex>.pth): give one with --sha256")
    sha = sha256_of(file)
    if not sha.startswith(prefix):
        raise WeightsError(f"{file}: SHA-256 {sha} does not start with {prefix}: damaged, incomplete or other weights")
    click.echo(f"sha256 {sha}")
    known = "".join(f"; {name}: {KNOWN_WEIGHTS[name].what}" for name in known_names(sha))
    click.echo(f"OK: {file} starts with {prefix}{known}")
