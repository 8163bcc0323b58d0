"""Load on alexnet-serve over loopback: throughput, latency and batch sizes per concurrency (a benchmark).

    python -m benchmarks.serve_load demo-out/run/best.onnx --duration 60 -o benchmarks/results/serve

For each mode (dynamic batching on: --max-batch-size 32 --max-batch-delay-ms 5; off: batches of
one) and each concurrency (1, 4, 16, 64 clients, each one request in flight, one image each), a
fresh server runs for --warmup then --duration seconds; every request's latency is the client's
wall time around `tritonclient.http` infer, exactly what a user waits. Batch sizes come from the
server's own /metrics. The reference is the same artifact in process: decode, preprocess and run
batches of 32 with `runtime`, the server's work minus the network. Client and server share this
machine's cores, as a sidecar client would; the report says so.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from PIL import Image

from benchmarks.serve_process import running
from runtime.options import command, duration_option, max_batch_delay_option, output_option
from runtime.outputs import write_text

MODES = {"batching": ("--max-batch-size", "32"), "no batching": ("--max-batch-size", "1", "--max-batch-delay-ms", "0")}
REFERENCE_BATCH = 32


@dataclass
class LoadResult:
    mode: str
    concurrency: int
    seconds: float
    ok: int
    failed: int
    throughput: float  # answered images per second
    p50_ms: float
    p99_ms: float
    mean_batch: float
    largest_batch_bucket: str  # the smallest histogram bound that holds every batch
    batch_prepare_ms: float  # mean per batch, decoding + preprocessing (server's /metrics)
    batch_run_ms: float  # mean per batch, the model
    errors: list[str]


def sample_images(count: int, size: int, seed: int = 0) -> list[bytes]:
    """JPEGs of smooth random colour fields (photo-like sizes: a few tens of kB at 256 px)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        small = rng.random((8, 8, 3)) * 255
        pixels = np.asarray(Image.fromarray(small.astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC))
        noisy = np.clip(pixels + rng.normal(0, 8, pixels.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def in_process_throughput(model: Path, images: list[bytes], seconds: float) -> dict[str, float]:
    """Images/s of decode + preprocess + predict_logits in batches of 32, this process, same backend."""
    import runtime
    from runtime.preprocess import preprocess_image

    predictor = runtime.load(model)
    batch = (images * REFERENCE_BATCH)[:REFERENCE_BATCH]
    spec = predictor.metadata.preprocess

    def one_batch() -> None:
        predictor.predict_logits(np.stack([preprocess_image(data, spec) for data in batch]))

    one_batch()  # warm-up
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        start = time.perf_counter()
        one_batch()
        times.append(time.perf_counter() - start)
    predictor.close()
    median = float(np.median(times))
    return {"images_per_s": REFERENCE_BATCH / median, "batch_ms": median * 1000, "batches": len(times)}


class LoadClient(threading.Thread):
    """One client: one request in flight, back to back, until `stop`; latencies of those started after `start`."""

    def __init__(self, url: str, images: list[bytes], offset: int, start: float, stop: float) -> None:
        super().__init__(daemon=True)
        self.url, self.images, self.offset, self.start_at, self.stop_at = url, images, offset, start, stop
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        import tritonclient.http as http

        client = http.InferenceServerClient(self.url, connection_timeout=60, network_timeout=60)
        i = self.offset
        while (began := time.perf_counter()) < self.stop_at:
            tensor = http.InferInput("image", [1], "BYTES")
            tensor.set_data_from_numpy(np.array([self.images[i % len(self.images)]], dtype=np.object_))
            i += 1
            try:
                client.infer("alexnet", [tensor], outputs=[http.InferRequestedOutput("labels")])
            except Exception as exc:  # counted, and the first few kept for the report
                if began >= self.start_at:
                    self.errors.append(str(exc).splitlines()[0][:200])
                continue
            if began >= self.start_at:
                self.latencies.append(time.perf_counter() - began)
        client.close()


def batch_metrics(server: Any) -> dict[str, float]:
    """The server's alexnet_batch_* samples (sizes and seconds), keyed by name with labels."""
    _, text = server.get("/metrics")
    found = {}
    for line in text.decode().splitlines():
        if line.startswith("alexnet_batch_") and 'model_name="alexnet"' in line:
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def drive(
    model: Path, mode: str, concurrency: int, images: list[bytes], timing: tuple[float, float, float], log: Path
) -> LoadResult:
    """One server, `concurrency` clients; timing: (warm-up s, measured s, the server's --max-batch-delay-ms)."""
    warmup, seconds, delay_ms = timing
    args = ("--no-grpc", "--max-queue", "1024", "--max-batch-delay-ms", str(delay_ms), *MODES[mode])
    with running(model, log, *args) as server:
        url = f"127.0.0.1:{server.http_port}"
        start = time.perf_counter() + warmup
        stop = start + seconds
        clients = [LoadClient(url, images, k * 7, start, stop) for k in range(concurrency)]
        for client in clients:
            client.start()
        time.sleep(max(0.0, start - time.perf_counter()))
        before = batch_metrics(server)
        time.sleep(max(0.0, stop - time.perf_counter()))
        after = batch_metrics(server)
        for client in clients:
            client.join(120)
    latencies = np.array([t for c in clients for t in c.latencies]) * 1000
    errors = [e for c in clients for e in c.errors]
    return LoadResult(
        mode=mode,
        concurrency=concurrency,
        seconds=seconds,
        ok=len(latencies),
        failed=len(errors),
        throughput=len(latencies) / seconds,
        p50_ms=float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
        p99_ms=float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
        mean_batch=_mean(after, before, "alexnet_batch_size"),
        largest_batch_bucket=_largest_bucket(before, after),
        batch_prepare_ms=_mean(after, before, "alexnet_batch_seconds", 'phase="prepare"') * 1000,
        batch_run_ms=_mean(after, before, "alexnet_batch_seconds", 'phase="run"') * 1000,
        errors=sorted(set(errors))[:5],
    )


def _delta(after: dict, before: dict, sample: str, label: str = "") -> float:
    """How much `sample` (e.g. alexnet_batch_size_count) grew over the measured window."""
    keys = [k for k in after if k.split("{")[0] == sample and label in k]
    return sum(after[k] - before.get(k, 0.0) for k in keys)


def _mean(after: dict, before: dict, histogram: str, label: str = "") -> float:
    count = _delta(after, before, f"{histogram}_count", label)
    return _delta(after, before, f"{histogram}_sum", label) / count if count else 0.0


def _largest_bucket(before: dict, after: dict) -> str:
    total = _delta(after, before, "alexnet_batch_size_count")
    buckets = [k for k in after if k.startswith("alexnet_batch_size_bucket")]
    for key in sorted(buckets, key=lambda k: float(k.split('le="')[1].split('"')[0])):
        if after[key] - before.get(key, 0.0) >= total:
            return key.split('le="')[1].split('"')[0]
    return "+Inf"


def markdown(doc: dict[str, Any]) -> str:
    ref = doc["in_process"]
    lines = [
        "# alexnet-serve under load (loopback)",
        "",
        f"Model: `{doc['model']}`; {doc['machine']}; client and server on the same cores.",
        f"Command: `{doc['command']}`",
        "",
        f"In process (same artifact and backend, decode + preprocess + run, batch {REFERENCE_BATCH}): "
        f"**{ref['images_per_s']:.1f} img/s**, {ref['batch_ms']:.1f} ms a batch. p99 bound: the batch delay "
        f"({doc['max_batch_delay_ms']:g} ms) plus one such batch = {doc['max_batch_delay_ms'] + ref['batch_ms']:.1f} ms.",
        "",
        "| mode | clients | img/s | vs in-process | p50 ms | p99 ms | failed | mean batch | largest batch <= "
        "| prepare ms / batch | run ms / batch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["results"]:
        lines.append(
            f"| {r['mode']} | {r['concurrency']} | {r['throughput']:.1f} | {r['throughput'] / ref['images_per_s']:.0%} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['failed']} | {r['mean_batch']:.1f} | {r['largest_batch_bucket']} "
            f"| {r['batch_prepare_ms']:.1f} | {r['batch_run_ms']:.1f} |"
        )
    return "\n".join(lines) + "\n"


@command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--concurrency", default="1,4,16,64", show_default=True, help="Client counts, comma-separated.")
@click.option("--modes", default="batching,no batching", show_default=True, help=f"Of: {', '.join(MODES)}.")
@duration_option()
@click.option("--warmup", type=click.FloatRange(0, 600), default=5, show_default=True, help="Seconds not measured.")
@max_batch_delay_option("delay_ms", "The server's, in batching mode.")
@click.option("--image-size", type=click.IntRange(16, 2048), default=256, show_default=True, help="Sent JPEGs' side.")
@output_option("Write OUTPUT.json and OUTPUT.md.")
def main(
    model: Path,
    concurrency: str,
    modes: str,
    duration: float,
    warmup: float,
    delay_ms: float,
    image_size: int,
    output: Path | None,
) -> None:
    """Drive alexnet-serve on 127.0.0.1 at each concurrency, with and without dynamic batching."""
    from benchmarks.machine import describe_machine

    try:
        counts = [int(c) for c in concurrency.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"{concurrency!r} is not comma-separated integers", param_hint="--concurrency"
        ) from None
    chosen = [m.strip() for m in modes.split(",")]
    if any(m not in MODES for m in chosen) or any(c < 1 or c > 256 for c in counts):
        raise click.UsageError(f"--modes takes {', '.join(MODES)}; --concurrency takes 1 to 256")
    images = sample_images(64, image_size)
    machine = describe_machine()
    doc = {
        "model": str(model),
        "command": " ".join(["python -m benchmarks.serve_load", *sys.argv[1:]]),
        "machine": f"{machine['cpu']}, {machine['physical_cores']} cores, {machine['os']}",
        "machine_details": machine,
        "max_batch_delay_ms": delay_ms,
        "in_process": in_process_throughput(model, images, min(duration, 20)),
        "results": [],
    }
    click.echo(f"in process: {doc['in_process']['images_per_s']:.1f} img/s", err=True)
    logs = Path(tempfile.mkdtemp(prefix="serve-load-"))  # the server's log, shown if it fails to start
    for mode in chosen:
        for count in counts:
            result = drive(model, mode, count, images, (warmup, duration, delay_ms), logs / f"{mode}-{count}.log")
            click.echo(
                f"{mode}, {count} clients: {result.throughput:.1f} img/s, p99 {result.p99_ms:.1f} ms, "
                f"{result.failed} failed, mean batch {result.mean_batch:.1f}",
                err=True,
            )
            doc["results"].append(asdict(result))
    emit(doc, markdown(doc), output)


def emit(doc: dict[str, Any], text: str, output: Path | None) -> None:
    """Print the table; with -o, also write OUTPUT.json (everything measured) and OUTPUT.md (the table)."""
    click.echo(text)
    if output is not None:
        write_text(Path(f"{output}.json"), json.dumps(doc, indent=2) + "\n")
        write_text(Path(f"{output}.md"), text)


if __name__ == "__main__":
    main()
