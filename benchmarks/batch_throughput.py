"""alexnet-batch against alexnet-run on the same files: whole commands, timed as users run them.

    python -m benchmarks.batch_throughput write-folder OUT --count 3000
    python -m benchmarks.batch_throughput compare MODEL OUT --sizes 1000,3000 --actor-counts 1,2 --json r.json

Each command runs as a subprocess on the first N files (sorted), one after another on a quiet
machine: alexnet-run --json (its defaults) and alexnet-batch with a local Ray cluster of the
machine's cores, for each actor count (threads = cores / actors). Reported per size: the wall
time, images/s, and the ratio to alexnet-run; and between two sizes the marginal images/s,
(N2 - N1) / (T2 - T1): the rate once started, without the start-up both pay once (Ray's cluster
and actors, ONNX Runtime's session). Every alexnet-batch output is checked against alexnet-run's:
one row per file, the same top-k indices, probabilities within 1e-6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmarks.decode_quality import write_photos
from runtime.options import files_count_option, group, json_file_option

# The folder's mix: mostly web-sized photos, some larger, a few PNGs and broken files (every 100th).
MIX = (((500, 375), 0.90), ((1024, 768), 0.07), ((4032, 3024), 0.03))
BROKEN_EVERY = 100


def write_folder(out: Path, count: int) -> list[Path]:
    """`count` files out/00000.jpg ...: photos of MIX's sizes interleaved (any first N has the same mix),
    every 10th web-sized one a PNG, every BROKEN_EVERY-th file broken (half a JPEG, or text)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    pools = []
    for seed, (size, share) in enumerate(MIX):
        staging = out / f".{size[0]}x{size[1]}"
        staging.mkdir(exist_ok=True)
        pools.append(iter(write_photos(staging, size, int(np.ceil(count * share)) + 1, seed=seed)))
    slots = [k for k, (_, share) in enumerate(MIX) for _ in range(round(100 * share))]  # a cycle of 100
    paths = []
    for i in range(count):
        source = next(pools[slots[i % len(slots)]])
        target = out / f"{i:05d}{'.png' if i % 10 == 5 and slots[i % len(slots)] == 0 else '.jpg'}"
        if i % BROKEN_EVERY == BROKEN_EVERY - 1:
            data = source.read_bytes()
            target.write_bytes(data[: len(data) // 2] if i % 2 else b"not an image")
        elif target.suffix == ".png":
            with Image.open(source) as image:
                image.save(target)
        else:
            source.rename(target)
        paths.append(target)
    for size, _ in MIX:
        for leftover in (out / f".{size[0]}x{size[1]}").iterdir():
            leftover.unlink()
        (out / f".{size[0]}x{size[1]}").rmdir()
    return paths


def _timed(command: list[str], stdout: Any = subprocess.DEVNULL) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):  # alexnet-run exits 1 when some files could not be read
        raise click.ClickException(f"{command[0]} failed: {done.stderr.strip().splitlines()[-1:]}")
    return seconds


def _script(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def run_size(model: Path, files: list[str], actors: list[int], workdir: Path) -> list[dict[str, Any]]:
    """Both commands on `files`; alexnet-batch's rows checked against alexnet-run's."""
    from runtime.batch.results import read_rows

    cores = os.cpu_count() or 1
    listing = workdir / "files.txt"
    listing.write_text("".join(f"{f}\n" for f in files))
    with open(workdir / "run.jsonl", "w") as out:
        seconds = _timed([_script("alexnet-run"), "-m", str(model), "--json", *files], stdout=out)
    reference = {os.path.abspath(r["path"]): r for r in map(json.loads, (workdir / "run.jsonl").open())}
    rows = [{"command": "alexnet-run", "files": len(files), "seconds": seconds}]
    for count in actors:
        out = workdir / f"batch-{count}"
        command = [_script("alexnet-batch"), str(model), str(listing), "-o", str(out), "--quiet", "--overwrite"]
        command += ["--actors", str(count), "--threads", str(max(1, cores // count))]
        seconds = _timed(command)
        rows.append({"command": f"alexnet-batch, {count} actor(s)", "files": len(files), "seconds": seconds})
        rows[-1] |= agreement(read_rows(out), reference)
    for row in rows:
        row["images_per_s"] = row["files"] / row["seconds"]
        row["vs_run"] = rows[0]["seconds"] / row["seconds"]
    return rows


def agreement(rows: list[dict[str, Any]], reference: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Rows against alexnet-run's: counts, the same classes, the largest probability difference."""
    by_path = {row["path"]: row for row in rows}
    same = set(by_path) == set(reference) and len(rows) == len(reference)
    diffs = [0.0]
    for path, ref in reference.items():
        row = by_path.get(path, {})
        if "error" in ref:
            same &= row.get("error") == ref["error"]
            continue
        same &= row.get("indices") == ref["indices"]
        diffs.append(float(np.max(np.abs(np.subtract(row.get("probabilities") or 0, ref["probabilities"])))))
    return {"rows": len(rows), "errors": sum(r["error"] is not None for r in rows), "same": same, "max_dp": max(diffs)}


def marginal(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per command, images/s between the smallest and the largest size: the rate after start-up."""
    out = []
    for command in dict.fromkeys(r["command"] for r in results):
        mine = sorted((r for r in results if r["command"] == command), key=lambda r: r["files"])
        if len(mine) > 1 and mine[-1]["seconds"] > mine[0]["seconds"]:
            rate = (mine[-1]["files"] - mine[0]["files"]) / (mine[-1]["seconds"] - mine[0]["seconds"])
            out.append({"command": command, "marginal_images_per_s": rate})
    base = out[0]["marginal_images_per_s"] if out else 1.0
    return [row | {"vs_run": row["marginal_images_per_s"] / base} for row in out]


def markdown(results: list[dict[str, Any]], rates: list[dict[str, Any]]) -> list[str]:
    lines = ["| files | command | seconds | images/s | vs alexnet-run | rows | same top-k, max \\|Δp\\| |"]
    lines.append("|---:|---|---:|---:|---:|---:|---|")
    for r in results:
        check = f"{'yes' if r['same'] else 'NO'}, {r['max_dp']:.1e}" if "same" in r else "(reference)"
        rows = f"{r['rows']} ({r['errors']} errors)" if "rows" in r else ""
        lines.append(
            f"| {r['files']} | {r['command']} | {r['seconds']:.1f} | {r['images_per_s']:.1f} | "
            f"{r['vs_run']:.2f} | {rows} | {check} |"
        )
    if rates:
        lines += ["", "| command | marginal images/s | vs alexnet-run |", "|---|---:|---:|"]
        lines += [f"| {r['command']} | {r['marginal_images_per_s']:.1f} | {r['vs_run']:.2f} |" for r in rates]
    return lines


@group()
def main() -> None:
    """alexnet-batch's throughput against alexnet-run's (README, "Batch inference on Ray")."""


@main.command("write-folder")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@files_count_option(3000)
def write_folder_command(out: Path, count: int) -> None:
    """COUNT files of mixed sizes and formats under OUT, one in a hundred broken."""
    paths = write_folder(out, count)
    click.echo(f"wrote {len(paths)} files under {out}")


@main.command()
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--sizes", default="1000,3000", show_default=True, help="Comma-separated file counts (first N).")
@click.option("--actor-counts", default="1,2", show_default=True, help="Comma-separated alexnet-batch --actors values.")
@json_file_option()
def compare(model: Path, folder: Path, sizes: str, actor_counts: str, json_path: Path | None) -> None:
    """Time alexnet-run and alexnet-batch on the first N files of FOLDER, for each N in --sizes."""
    from benchmarks.machine import describe_machine
    from runtime.cli import collect_images

    files = [os.path.abspath(p) for p in collect_images((str(folder),))[0]]
    results = []
    for size in (int(s) for s in sizes.split(",")):
        if size > len(files):
            raise click.UsageError(f"--sizes {size}: {folder} has {len(files)} image files")
        with tempfile.TemporaryDirectory() as tmp:
            results += run_size(model, files[:size], [int(a) for a in actor_counts.split(",")], Path(tmp))
        click.echo(f"{size} files done", err=True)
    rates = marginal(results)
    click.echo("\n".join(markdown(results, rates)), err=json_path is not None and str(json_path) == "-")
    if json_path is not None:
        text = json.dumps({"machine": describe_machine(), "results": results, "marginal": rates}, indent=1)
        click.echo(text) if str(json_path) == "-" else json_path.write_text(text + "\n")


if __name__ == "__main__":
    main()
