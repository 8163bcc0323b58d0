"""alexnet-serve under hostile load on loopback: do normal clients keep their throughput, does memory stay bounded?

    python -m benchmarks.serve_hostile demo-out/run/best.onnx -o benchmarks/results/serve-hostile

One server (its defaults: --header-timeout 10, --max-connections 1000 ...), three phases of
--duration seconds each, 16 normal clients throughout (one 256-px JPEG per request, one request in
flight each, tritonclient.http as in benchmarks/serve_load.py):
  baseline     the 16 clients alone
  slowloris    + 200 connections that send a partial request and then one header line a second,
               reconnecting whenever the server cuts them off
  float TIFFs  + 2 clients sending, back to back, a 9400 x 9400 float32 TIFF (deflate: ~0.6 MB on
               the wire, 353 MB of pixels), the decompression load that once took the server to 5.9 GB
               (now refused from its header: over the 512 MiB one image may take)
  64 MP float TIFFs  the same with 8000 x 8000, just under that limit: decoded, two at a time
               within the server's --decode-memory (1024 MiB); the CPU they take is the clients' loss
Reported per phase: the normal clients' images/s and its ratio to the baseline, p99 latency,
failures, and the server's peak resident memory (sampled every 0.1 s from /proc).
"""

from __future__ import annotations

import io
import select
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
from PIL import Image

from benchmarks.serve_load import LoadClient, emit, sample_images
from benchmarks.serve_process import running
from runtime.options import command, duration_option, output_option

NORMAL_CLIENTS = 16


def float_tiff(side: int = 9400) -> bytes:
    """A float32 ('F') TIFF of side x side zeros, deflate-compressed: small file, huge image."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.float32), mode="F").save(buffer, "TIFF", compression="tiff_adobe_deflate")
    return buffer.getvalue()


class Slowloris(threading.Thread):
    """`count` connections, each a partial request plus one header line per `interval` s; reconnects when cut."""

    def __init__(self, port: int, count: int, stop: threading.Event, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.port, self.count, self.stop, self.interval = port, count, stop, interval
        self.reconnects = 0

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n")
            return sock
        except OSError:
            return None

    def run(self) -> None:
        socks = [self._open() for _ in range(self.count)]
        while not self.stop.wait(self.interval):
            live = [s for s in socks if s is not None]
            readable, _, _ = select.select(live, [], [], 0)  # readable: the server answered (408) or closed
            for i, sock in enumerate(socks):
                try:
                    if sock is None or sock in readable:
                        raise OSError("cut off")
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    if sock is not None:
                        sock.close()
                    socks[i] = self._open()
                    self.reconnects += 1
        for sock in socks:
            if sock is not None:
                sock.close()


class MemorySampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.running = pid, 0, True

    def run(self) -> None:
        while self.running:
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
                rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
                self.peak_kb = max(self.peak_kb, rss)
            except (OSError, StopIteration):
                return
            time.sleep(0.1)


PHASES = ("baseline", "slowloris", "float TIFFs", "64 MP float TIFFs")
TIFF_SIDES = {"float TIFFs": 9400, "64 MP float TIFFs": 8000}


def phase(server: Any, name: str, images: list[bytes], seconds: float, tiffs: dict[int, bytes]) -> dict[str, Any]:
    stop = threading.Event()
    url = f"127.0.0.1:{server.http_port}"
    start = time.perf_counter() + 2.0  # clients and attackers settle in first
    end = start + seconds
    attackers: list[Any] = []
    if name == "slowloris":
        attackers = [Slowloris(server.http_port, 200, stop)]
    elif name in TIFF_SIDES:
        attackers = [LoadClient(url, [tiffs[TIFF_SIDES[name]]], 0, start, end) for _ in range(2)]
    clients = [LoadClient(url, images, k * 7, start, end) for k in range(NORMAL_CLIENTS)]
    memory = MemorySampler(server.process.pid)
    for thread in [memory, *attackers, *clients]:
        thread.start()
    for client in clients:
        client.join(seconds + 120)
    stop.set()
    for attacker in attackers:
        attacker.join(30)
    memory.running = False
    latencies = np.array([t for c in clients for t in c.latencies]) * 1000
    return {
        "phase": name,
        "images_per_s": len(latencies) / seconds,
        "p99_ms": float(np.percentile(latencies, 99)) if len(latencies) else float("nan"),
        "failed": sum(len(c.errors) for c in clients),
        "peak_rss_mb": memory.peak_kb / 1024,
        "attacker_errors": sorted({e for a in attackers for e in getattr(a, "errors", [])})[:3],
        "attacker_answers": sum(len(getattr(a, "latencies", [])) for a in attackers),
        "reconnects": sum(getattr(a, "reconnects", 0) for a in attackers),
    }


def markdown(doc: dict[str, Any]) -> str:
    base = doc["results"][0]["images_per_s"]
    lines = [
        "# alexnet-serve under hostile load (loopback)",
        "",
        f"Model: `{doc['model']}`. Machine: {doc['machine']}. Command: `{doc['command']}`.",
        f"{NORMAL_CLIENTS} normal clients in every phase, {doc['duration']:.0f} s measured per phase; "
        "client, attackers and server share the machine's cores.",
        "",
        "| phase | images/s | vs baseline | p99 ms | failed | server peak RSS MB | attacker reconnects / answers |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["results"]:
        lines.append(
            f"| {r['phase']} | {r['images_per_s']:.1f} | {r['images_per_s'] / base:.2f}x | {r['p99_ms']:.1f} "
            f"| {r['failed']} | {r['peak_rss_mb']:.0f} | {r['reconnects'] or r['attacker_answers']} |"
        )
    for r in doc["results"]:
        if r["phase"] in TIFF_SIDES:
            what = "; ".join(r["attacker_errors"]) or "decoded and predicted"
            lines += ["", f"{r['phase']}: {r['attacker_answers']} answered, errors: {what}"]
    return "\n".join(lines) + "\n"


@command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@duration_option("Per phase.", default=20)
@output_option("Write OUTPUT.json and OUTPUT.md.")
def main(model: Path, duration: float, output: Path | None) -> None:
    """Measure MODEL's server under slow-client and float-TIFF attacks beside 16 normal clients."""
    from benchmarks.machine import describe_machine

    images, tiffs = sample_images(64, 256), {side: float_tiff(side) for side in set(TIFF_SIDES.values())}
    machine = describe_machine()
    doc: dict[str, Any] = {
        "model": str(model),
        "command": " ".join(["python -m benchmarks.serve_hostile", *sys.argv[1:]]),
        "machine": f"{machine['cpu']}, {machine['physical_cores']} cores, {machine['os']}",
        "duration": duration,
        "float_tiff_bytes": {str(side): len(data) for side, data in tiffs.items()},
        "results": [],
    }
    log = Path(tempfile.mkdtemp(prefix="serve-hostile-")) / "server.log"
    with running(model, log, "--no-grpc", "--max-queue", "1024") as server:
        for name in PHASES:
            result = phase(server, name, images, duration, tiffs)
            click.echo(f"{name}: {result['images_per_s']:.1f} img/s, peak RSS {result['peak_rss_mb']:.0f} MB", err=True)
            doc["results"].append(result)
    emit(doc, markdown(doc), output)


if __name__ == "__main__":
    main()
