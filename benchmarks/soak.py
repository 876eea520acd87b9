"""Soak test: mixed load against one service for N minutes, with workers killed now and then.

    .venv/bin/python benchmarks/soak.py --minutes 30 [--url http://host:port] [--out bench-out/soak]

Without ``--url`` it starts ``python -m immich_ml`` itself on 127.0.0.1 (two CPU workers, the
starter models in ``--cache``). Load: ``--concurrency`` (4) clients sending CLIP image and text,
face detection + recognition, OCR when the OCR model is in the cache, and 5% bad input (which
must get a 4xx). Every ``--kill-every`` seconds one ready worker, picked at random from
``/health``, gets SIGKILL; it must be back (ready, new pid) within ``--back-within`` seconds.

Reports (JSON + PNG): answers by class (``ok``, ``expected_4xx``, ``expected_during_restart`` for
503/500 answers naming the killed worker within a few seconds of a kill, ``unexpected_*``),
p50/p99 latency of good requests per minute, and the RSS of every service process over time with
the end-vs-after-warm-up ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests
from PIL import Image

from immich_ml.models.starter import FACE_MODEL, TINY_CLIP_MODEL, photos

REPO = Path(__file__).resolve().parents[1]
RESTART_WINDOW_S = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Service:
    def __init__(self, cache: Path, log: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MACHINE_LEARNING_", "IMMICH_"))}
        env.update({
            "IMMICH_HOST": "127.0.0.1", "IMMICH_PORT": str(self.port), "MACHINE_LEARNING_CACHE_FOLDER": str(cache),
            "MACHINE_LEARNING_DEVICE": "cpu", "MACHINE_LEARNING_WORKERS": "2", "MACHINE_LEARNING_DEVICE_IDS": "0,1",
            "MACHINE_LEARNING_REQUEST_THREADS": "2", "MACHINE_LEARNING_MODEL_INTER_OP_THREADS": "1",
            "MACHINE_LEARNING_MODEL_INTRA_OP_THREADS": "1", "HF_HUB_OFFLINE": "1",
        })
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, "-m", "immich_ml"], env=env, cwd=REPO,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def wait_ready(url: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/ready", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"service at {url} not ready after {timeout} s")


def workloads(cache: Path) -> tuple[list[tuple[str, dict[str, Any], bool]], list[str]]:
    """(name, multipart fields, good) choices, and notes on what is left out."""
    images = [p.read_bytes() for p in list(photos(cache).values())[:4]]
    ent = lambda value: json.dumps(value)  # noqa: E731
    visual = ent({"clip": {"visual": {"modelName": TINY_CLIP_MODEL}}})
    textual = ent({"clip": {"textual": {"modelName": TINY_CLIP_MODEL}}})
    faces = ent({"facial-recognition": {"detection": {"modelName": FACE_MODEL, "options": {"minScore": 0.7}},
                                        "recognition": {"modelName": FACE_MODEL}}})
    good: list[tuple[str, dict[str, Any], bool]] = []
    for i, image in enumerate(images):
        good.append((f"clip-image-{i}", {"entries": visual, "image": image}, True))
        good.append((f"faces-{i}", {"entries": faces, "image": image}, True))
    for text in ("a dog", "a photo of an astronaut", "ein Haus am See", "🙂 " * 30):
        good.append(("clip-text", {"entries": textual, "text": text}, True))
    notes = []
    ocr_folder = cache / "ocr" / "PP-OCRv5_mobile"
    if ocr_folder.is_dir():
        ocr = ent({"ocr": {"detection": {"modelName": "PP-OCRv5_mobile"}, "recognition": {"modelName": "PP-OCRv5_mobile"}}})
        good += [(f"ocr-{i}", {"entries": ocr, "image": image}, True) for i, image in enumerate(images)]
    else:
        notes.append(f"OCR left out: no OCR model in {ocr_folder}")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    bad = [
        ("bad-text-as-image", {"entries": visual, "image": b"hello, text\n"}, False),
        ("bad-entries", {"entries": "{clip", "text": "x"}, False),
        ("bad-model", {"entries": ent({"clip": {"visual": {"modelName": "../../etc/passwd"}}}), "image": buffer.getvalue()}, False),
        ("bad-truncated-jpeg", {"entries": visual, "image": images[0][: len(images[0]) // 3]}, False),
    ]
    return good + bad, notes


class Soak:
    def __init__(self, url: str, choices: list[tuple[str, dict[str, Any], bool]], args: argparse.Namespace) -> None:
        self.url, self.args = url, args
        self.good = [c for c in choices if c[2]]
        self.bad = [c for c in choices if not c[2]]
        self.lock = threading.Lock()
        self.classes: Counter[str] = Counter()
        self.latencies: list[tuple[float, float]] = []  # (seconds since start, latency) of good answers
        self.kills: list[dict[str, Any]] = []
        self.rss: dict[str, list[tuple[float, int]]] = {}
        self.unexpected: list[str] = []
        self.stop = threading.Event()
        self.started = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.started

    def recent_kill(self) -> bool:
        return any(self.now() - k["at_s"] < RESTART_WINDOW_S for k in self.kills)

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        while not self.stop.is_set():
            name, fields, good = rng.choice(self.bad) if rng.random() < 0.05 else rng.choice(self.good)
            files = {k: ("blob", v) if isinstance(v, bytes) else (None, v) for k, v in fields.items()}
            began = time.monotonic()
            try:
                response = session.post(self.url + "/predict", files=files, timeout=120)
                status, text = response.status_code, response.text[:300]
            except requests.RequestException as error:
                status, text = -1, f"{type(error).__name__}: {error}"[:300]
            latency = time.monotonic() - began
            if good and status == 200:
                kind = "ok"
            elif not good and 400 <= status < 500:
                kind = "expected_4xx"
            elif status in (500, 503) and self.recent_kill() and any(
                    w in text for w in ("killed by signal", "restart", "starting", "retry")):
                kind = "expected_during_restart"
            else:
                kind = f"unexpected_{status}"
            with self.lock:
                self.classes[kind] += 1
                if kind == "ok":
                    self.latencies.append((self.now(), latency))
                elif kind.startswith("unexpected"):
                    self.unexpected.append(f"{self.now():.1f}s {name}: {status} {text}")

    def health(self) -> dict[str, Any]:
        return dict(requests.get(self.url + "/health", timeout=10).json())

    def killer(self) -> None:
        rng = random.Random(99)
        while not self.stop.wait(self.args.kill_every):
            try:
                ready = [w for w in self.health()["workers"] if w["state"] == "ready" and w.get("pid")]
            except requests.RequestException:
                continue
            if not ready:
                continue
            victim = rng.choice(ready)
            kill = {"at_s": round(self.now(), 1), "slot": victim["slot"], "pid": victim["pid"], "back_after_s": None}
            os.kill(victim["pid"], signal.SIGKILL)
            with self.lock:
                self.kills.append(kill)
            deadline = time.monotonic() + self.args.back_within
            while time.monotonic() < deadline and not self.stop.is_set():
                time.sleep(0.5)
                try:
                    slot = next(w for w in self.health()["workers"] if w["slot"] == victim["slot"])
                except (requests.RequestException, StopIteration):
                    continue
                if slot["state"] == "ready" and slot["pid"] != victim["pid"]:
                    kill["back_after_s"] = round(self.now() - kill["at_s"], 2)
                    break

    def sampler(self, server_pid: int | None) -> None:
        while not self.stop.wait(self.args.sample_every):
            try:
                workers = self.health()["workers"]
            except requests.RequestException:
                continue
            pids = {f"worker {w['slot']}": w["pid"] for w in workers if w.get("pid")}
            if server_pid is not None:
                pids["server"] = server_pid
            for name, pid in pids.items():
                value = rss_kb(pid)
                if value is not None:
                    self.rss.setdefault(f"{name} (pid {pid})", []).append((round(self.now(), 1), value))

    def run(self, server_pid: int | None) -> None:
        threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(self.args.concurrency)]
        threads += [threading.Thread(target=self.killer, daemon=True),
                    threading.Thread(target=self.sampler, args=(server_pid,), daemon=True)]
        for thread in threads:
            thread.start()
        self.stop.wait(self.args.minutes * 60)
        self.stop.set()
        for thread in threads:
            thread.join(130)


def percentiles(samples: list[tuple[float, float]]) -> list[dict[str, float]]:
    windows: dict[int, list[float]] = {}
    for at, latency in samples:
        windows.setdefault(int(at // 60), []).append(latency)
    out = []
    for minute, values in sorted(windows.items()):
        values.sort()
        out.append({"minute": minute, "count": len(values), "p50_ms": round(statistics.median(values) * 1000, 1),
                    "p99_ms": round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 1)})
    return out


def rss_growth(series: dict[str, list[tuple[float, int]]], warmup_s: float) -> dict[str, Any]:
    """Per process: RSS at its last sample / RSS ``warmup_s`` after its first sample (a replaced
    worker warms up from its own start)."""
    out = {}
    for name, points in series.items():
        after = [v for t, v in points if t >= points[0][0] + warmup_s]
        if len(after) >= 2:
            out[name] = {"after_warmup_kb": after[0], "end_kb": after[-1], "ratio": round(after[-1] / after[0], 4),
                         "max_kb": max(after)}
    return out


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    minutes = [w["minute"] + 0.5 for w in report["latency_per_minute"]]
    top.plot(minutes, [w["p50_ms"] for w in report["latency_per_minute"]], label="p50")
    top.plot(minutes, [w["p99_ms"] for w in report["latency_per_minute"]], label="p99")
    for kill in report["kills"]:
        top.axvline(kill["at_s"] / 60, color="red", alpha=0.3)
    top.set_ylabel("latency of good requests (ms)")
    top.legend()
    for name, points in report["rss_kb"].items():
        bottom.plot([t / 60 for t, _ in points], [v / 1024 for _, v in points], label=name)
    bottom.set_ylabel("RSS (MiB)")
    bottom.set_xlabel("minutes (red lines: a worker was killed)")
    bottom.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--url", help="a running service (default: start one on 127.0.0.1)")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "models")
    parser.add_argument("--out", type=Path, default=REPO / "bench-out" / "soak")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=90.0)
    parser.add_argument("--back-within", type=float, default=60.0)
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds before the RSS baseline")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    service = None if args.url else Service(args.cache, args.out / "service.log")
    url = args.url or (service.url if service else "")
    try:
        wait_ready(url)
        choices, notes = workloads(args.cache)
        soak = Soak(url, choices, args)
        soak.run(service.process.pid if service else None)
        final = soak.health()
    finally:
        if service is not None:
            service.stop()
    report = {
        "minutes": args.minutes, "concurrency": args.concurrency, "notes": notes,
        "answers": dict(soak.classes), "unexpected": soak.unexpected[:50],
        "kills": soak.kills, "every_killed_worker_back": all(k["back_after_s"] is not None for k in soak.kills),
        "final_workers": [{k: w.get(k) for k in ("slot", "state", "pid", "restarts")} for w in final["workers"]],
        "latency_per_minute": percentiles(soak.latencies),
        "rss_growth": rss_growth(soak.rss, args.warmup), "rss_kb": soak.rss,
    }
    (args.out / "soak.json").write_text(json.dumps(report, indent=1))
    plot(report, args.out / "soak.png")
    summary = {k: report[k] for k in ("answers", "every_killed_worker_back", "rss_growth", "notes")}
    summary["kills"] = len(soak.kills)
    print(json.dumps(summary, indent=1))
    print(f"soak: report in {args.out / 'soak.json'} and {args.out / 'soak.png'}")
    unexpected = sum(v for k, v in soak.classes.items() if k.startswith("unexpected"))
    return 0 if unexpected == 0 and report["every_killed_worker_back"] else 1


if __name__ == "__main__":
    sys.exit(main())
