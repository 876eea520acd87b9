"""Benchmark output: the human-readable table, the JSON document and the optional PNG plot.

JSON document (``SCHEMA`` = ``immich_ml.bench/1``), times in milliseconds unless named ``_s``:

* ``machine``: ``cpu`` (model name), ``cores``, ``load_start``/``load_end`` (1/5/15-minute load
  averages), ``python``, ``onnxruntime``, ``numpy``, ``platform``;
* ``floor``: :class:`~immich_ml.bench.floor.MatmulFloor` (``gflops`` = best float32 GFLOP/s);
* ``inputs``: name, kind (preview/phone), width, height, bytes; ``plan``: concurrencies, rounds …;
* ``results``: one per (row, workload): ``workload``, ``model``, ``device``, ``precision``,
  ``intra_op_threads``, ``placement`` (per model: provider, device, precision), ``stages_ms`` and
  ``reference_stages_ms`` (mean per request at concurrency 1), ``runs`` (per mode and concurrency:
  ``throughput_rps``, ``latency_ms`` p50/p95/p99/mean, ``cpu_ms_per_request``, ``vs_reference``),
  ``overhead`` (fraction over the inference stage, in-process and http), ``agreement`` (with the
  reference and over HTTP), ``gflop_per_request``, ``floor_ms`` (all cores at matmul speed),
  ``floor_cpu_ms`` (CPU-ms per request at the per-core matmul rate) and ``ceiling_rps``;
* ``summary``: per result, the best throughput of each mode over concurrencies and their ratios;
* ``parity`` (with ``--parity``): :class:`~immich_ml.bench.parity.ParityResult` per check;
* per result also ``service_memory`` (RSS/PSS of the service with this and the earlier workloads
  loaded, :mod:`~immich_ml.bench.memory`) and ``first_request``
  (:mod:`~immich_ml.bench.first_request`); ``overhead`` has ``http_minus_in_process_ms``;
* ``peer_memory``: the reference's RSS/PSS after start and after each workload;
* ``goals``: issue 12's targets against this run (:mod:`~immich_ml.bench.goals`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from immich_ml.bench.goals import format_goals
from immich_ml.models.timing import STAGES

SCHEMA = "immich_ml.bench/1"


def best(result: dict[str, Any], mode: str) -> dict[str, Any] | None:
    """The run of ``mode`` with the highest throughput (over concurrencies)."""
    runs = [r for r in result["runs"] if r["mode"] == mode]
    return max(runs, key=lambda r: r["throughput_rps"]) if runs else None


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Headline figures of one result: best throughput per mode and ratios to the reference's best."""
    summary: dict[str, Any] = {
        "workload": result["workload"], "model": result["model"], "device": result["device"],
        "precision": result["precision"], "intra_op_threads": result["intra_op_threads"],
    }
    ref = best(result, "reference")
    for mode in ("in-process", "http", "reference"):
        run = best(result, mode)
        if run is None:
            continue
        key = mode.replace("-", "_")
        summary[f"{key}_rps"] = run["throughput_rps"]
        summary[f"{key}_concurrency"] = run["concurrency"]
        if ref is not None and mode != "reference" and ref["throughput_rps"] > 0:
            summary[f"{key}_vs_reference"] = round(run["throughput_rps"] / ref["throughput_rps"], 3)
    summary["overhead"] = result["overhead"]
    summary["inference_ms"] = result["stages_ms"].get("inference")
    for mode in ("in-process", "reference"):
        single = next((r for r in result["runs"] if r["mode"] == mode and r["concurrency"] == 1), None)
        summary[f"{mode.replace('-', '_')}_cpu_ms"] = single["cpu_ms_per_request"] if single else None
    summary["floor_cpu_ms"] = result.get("floor_cpu_ms")
    ceiling = result.get("ceiling_rps")
    ours = summary.get("in_process_rps")
    summary["of_ceiling"] = round(ours / ceiling, 3) if ceiling and ours else None
    return summary


def _f(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _pct_plain(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f} %"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f} %"


def format_header(doc: dict[str, Any]) -> list[str]:
    machine, floor = doc["machine"], doc["floor"]
    load = "/".join(_f(x, 1) for x in machine["load_start"])
    load_end = "/".join(_f(x, 1) for x in machine["load_end"]) if machine.get("load_end") else "–"
    kinds: dict[str, int] = {}
    for item in doc["inputs"]:
        kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
    return [
        f"machine: {machine['cpu']}, {machine['cores']} cores; load average (1/5/15 min) {load} → {load_end}",
        f"software: Python {machine['python']}, onnxruntime {machine['onnxruntime']}, numpy {machine['numpy']}",
        f"floor: float32 {floor['n']}² matmul {_f(floor['gflops'])} GFLOP/s (best of {floor['repeats']}, "
        f"{floor['cores']} cores; {_f(floor['gflops_per_core_cpu'])} GFLOP/s per CPU-second)",
        "inputs: " + ", ".join(f"{n} {k}" for k, n in kinds.items()) + f"; plan {doc['plan']}",
    ]


def format_result(result: dict[str, Any]) -> list[str]:
    where = ", ".join(
        sorted({f"{p['type']}: {p['provider']} {p['device']} {p['precision']}" for p in result["placement"]})
    )
    lines = [
        "",
        f"{result['workload']} · {result['model']} · {result['device']} {result['precision']}"
        + (f" intra={result['intra_op_threads']}" if result["intra_op_threads"] else "")
        + f"  [{where}]",
        "  stage ms/request " + "".join(f"{s:>12}" for s in (*STAGES, "total")),
    ]
    for name, stages in (("ours", result["stages_ms"]), ("reference", result.get("reference_stages_ms"))):
        if stages:
            values = [stages.get(s, 0.0) for s in STAGES]
            lines.append(f"  {name:<16}" + "".join(f"{_f(v, 2):>12}" for v in (*values, sum(values))))
    lines.append(f"  {'mode':<12}{'conc':>5}{'req/s':>9}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}"
                 f"{'CPU ms/req':>12}{'× ref':>8}")
    for run in result["runs"]:
        lat = run["latency_ms"]
        lines.append(
            f"  {run['mode']:<12}{run['concurrency']:>5}{_f(run['throughput_rps'], 2):>9}{_f(lat['p50']):>10}"
            f"{_f(lat['p95']):>10}{_f(lat['p99']):>10}{_f(run['cpu_ms_per_request']):>12}"
            f"{_f(run['vs_reference'], 2):>8}"
        )
    overhead = result["overhead"]
    agreement = "; ".join(_agreement(name, a) for name, a in result["agreement"].items())
    lines.append(
        f"  overhead over inference: in-process {_pct(overhead.get('in-process'))}, http {_pct(overhead.get('http'))}"
        f" (http over in-process {_pct(overhead.get('http-over-in-process'))})"
        f"; floor {_f(result.get('floor_ms'))} ms, {_f(result.get('floor_cpu_ms'))} CPU-ms, "
        f"ceiling {_f(result.get('ceiling_rps'), 2)} req/s ({_f(result.get('gflop_per_request'), 2)} GFLOP/request)"
    )
    if agreement:
        lines.append(f"  agreement with in-process answers: {agreement}")
    if "http_over_worker_ms" in overhead:
        lines.append(f"  service time around the worker (HTTP latency − worker's Server-Timing), concurrency 1: "
                     f"{overhead['http_over_worker_ms']:.3f} ms median, {overhead.get('http_over_worker_mean_ms', 0.0):.3f} ms mean")
    if "http_minus_in_process_ms" in overhead:
        lines.append(f"  HTTP + worker hop over in-process, concurrency 1: {overhead['http_minus_in_process_ms']:+.3f} ms "
                     f"per request (means), {overhead.get('http_minus_in_process_p50_ms', 0.0):+.3f} ms (medians)")
    service = result.get("service_memory")
    if service:
        lines.append(f"  service memory with this and the earlier workloads loaded: RSS {_f(service['rss_mb'])} MB, "
                     f"PSS {_f(service.get('pss_mb'))} MB ({service['processes']} processes)")
    first = result.get("first_request")
    if first:
        loads = ", ".join(f"{k} {v} s" for k, v in (first.get("load_time_s") or {}).items())
        repeat = f"; repeated query {_f(first['repeat_query_ms'], 2)} ms" if "repeat_query_ms" in first else ""
        lines.append(f"  first request after start {_f(first['after_start_ms'])} ms "
                     f"({_f(first.get('after_start_vs_steady'), 2)}× steady {_f(first['steady_ms'], 2)} ms), after a "
                     f"TTL unload {_f(first.get('after_unload_ms'))} ms ({_f(first.get('after_unload_vs_steady'), 2)}×)"
                     f"; load {loads}{repeat}")
    return lines


def _agreement(name: str, a: dict[str, Any]) -> str:
    if "texts_ours" in a:
        return (f"{name}: texts {a['texts_ours']}/{a['texts_other']}, same {a['texts_same']}, "
                f"|Δ textScore| ≤ {a['max_text_score_difference']}, |Δ boxScore| ≤ {a['max_box_score_difference']}")
    return f"{name}: cos ≥ {a['min_cosine']:.4f}" + (
        f", faces {a['faces_ours']}/{a['faces_other']} matched {a['faces_matched']}" if "faces_ours" in a else "")


def format_summary(summaries: Sequence[dict[str, Any]]) -> list[str]:
    lines = ["", "summary (best throughput over concurrencies; × = ratio to the reference's best; "
             "CPU-ms per request at concurrency 1; ceiling = all cores at matmul speed)",
             f"  {'workload':<13}{'row':<15}{'ours req/s':>11}{'× ref':>7}{'http req/s':>11}{'× ref':>7}"
             f"{'ref req/s':>10}{'overhead in/http':>21}{'CPU ms ours':>12}{'ref':>7}{'floor':>7}{'of ceiling':>11}"]
    for s in summaries:
        row = f"{s['device']} {s['precision']}" + (f" t{s['intra_op_threads']}" if s["intra_op_threads"] else "")
        overhead = s["overhead"]
        lines.append(
            f"  {s['workload']:<13}{row:<15}{_f(s.get('in_process_rps'), 2):>11}{_f(s.get('in_process_vs_reference'), 2):>7}"
            f"{_f(s.get('http_rps'), 2):>11}{_f(s.get('http_vs_reference'), 2):>7}{_f(s.get('reference_rps'), 2):>10}"
            f"{_pct(overhead.get('in-process')) + ' / ' + _pct(overhead.get('http')):>21}"
            f"{_f(s.get('in_process_cpu_ms')):>12}{_f(s.get('reference_cpu_ms'), 0):>7}{_f(s.get('floor_cpu_ms'), 0):>7}"
            f"{_pct_plain(s.get('of_ceiling')):>11}"
        )
    return lines


def format_parity(checks: Sequence[dict[str, Any]]) -> list[str]:
    if not checks:
        return []
    lines = ["", "parity (fast path vs full decode / FP32, worst case over the inputs)",
             f"  {'check':<12}{'workload':<14}{'min cos':>9}{'faces':>9}{'matched':>9}{'identity':>9}"
             f"{'box px':>8}{'tensor max':>11}{'rel rms':>9}"]
    for c in checks:
        faces = f"{c['faces_a']}/{c['faces_b']}" if c.get("faces_a") or c.get("faces_b") else "–"
        lines.append(
            f"  {c['check']:<12}{c['workload']:<14}{c['min_cosine']:>9.5f}{faces:>9}"
            f"{(c['faces_matched'] if faces != '–' else '–'):>9}{(c['identity_kept'] if faces != '–' else '–'):>9}"
            f"{_f(c.get('max_box_shift_px') if faces != '–' else None):>8}{_f(c.get('tensor_max_abs'), 4):>11}"
            f"{_f(c.get('tensor_rel_rms'), 4):>9}"
        )
    return lines


def format_text(doc: dict[str, Any]) -> str:
    lines = format_header(doc)
    for result in doc["results"]:
        lines += format_result(result)
    lines += format_summary(doc["summary"])
    lines += format_parity(doc.get("parity", []))
    peer = doc.get("peer_memory") or []
    if peer:
        lines += ["", "reference memory (own process, cumulative): " + ", ".join(
            f"after {step['after']} RSS {_f(step.get('rss_mb'))} / PSS {_f(step.get('pss_mb'))} MB" for step in peer)]
    lines += format_goals(doc.get("goals", []))
    return "\n".join(lines) + "\n"


def plot(doc: dict[str, Any], path: Path) -> None:
    """Throughput per concurrency (top) and stage times (bottom), one column per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(dict.fromkeys(r["workload"] for r in doc["results"]))
    fig, axes = plt.subplots(2, len(workloads), figsize=(5.5 * len(workloads), 8), squeeze=False)
    for column, workload in enumerate(workloads):
        results = [r for r in doc["results"] if r["workload"] == workload]
        top, bottom = axes[0][column], axes[1][column]
        reference_drawn = False
        bars: list[tuple[str, dict[str, float]]] = []
        for result in results:
            label = f"{result['device']} {result['precision']}" + (
                f" t{result['intra_op_threads']}" if result["intra_op_threads"] else "")
            for mode, style in (("in-process", "-o"), ("http", "--s"), ("reference", ":k^")):
                runs = [r for r in result["runs"] if r["mode"] == mode]
                if not runs or (mode == "reference" and reference_drawn):
                    continue
                reference_drawn |= mode == "reference"
                name = "reference (Immich-style)" if mode == "reference" else f"{label} {mode}"
                top.plot([r["concurrency"] for r in runs], [r["throughput_rps"] for r in runs], style, label=name)
            bars.append((label, result["stages_ms"]))
            if result.get("reference_stages_ms") and not any(n == "reference" for n, _ in bars):
                bars.append(("reference", result["reference_stages_ms"]))
        top.set_title(f"{workload} ({results[0]['model']})")
        top.set_xlabel("concurrent requests")
        top.set_ylabel("requests / s")
        top.set_xticks(sorted({r["concurrency"] for res in results for r in res["runs"]}))
        top.grid(alpha=0.3)
        top.legend(fontsize=7)
        left = [0.0] * len(bars)
        for stage in STAGES:
            values = [stages.get(stage, 0.0) for _, stages in bars]
            bottom.barh([n for n, _ in bars], values, left=left, label=stage)
            left = [a + b for a, b in zip(left, values, strict=True)]
        bottom.set_xlabel("ms per request (concurrency 1)")
        bottom.legend(fontsize=7)
    machine = doc["machine"]
    fig.suptitle(f"immich_ml bench · {machine['cpu']} · {machine['cores']} cores")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
