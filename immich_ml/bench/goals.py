"""The performance goals of issue 12, checked against one bench document.

Every figure is a ratio to the Immich-style reference measured in the same run (or, for overhead,
the difference between our own HTTP and in-process runs of that run), so load from other
processes cancels as far as it can. A goal whose inputs the run did not measure is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _run(result: dict[str, Any], mode: str, concurrency: int) -> dict[str, Any] | None:
    return next((r for r in result["runs"] if r["mode"] == mode and r["concurrency"] == concurrency), None)


def _best(result: dict[str, Any], mode: str) -> float | None:
    runs = [r["throughput_rps"] for r in result["runs"] if r["mode"] == mode]
    return max(runs) if runs else None


def _find(results: Sequence[dict[str, Any]], workload: str, precision: str) -> dict[str, Any] | None:
    return next((r for r in results if r["workload"] == workload and r["precision"] == precision
                 and r["device"] == "cpu" and not r["intra_op_threads"]), None)


def _goal(name: str, target: str, measured: float | None, met: bool | None, detail: str = "") -> dict[str, Any]:
    return {"goal": name, "target": target, "measured": measured, "met": met, "detail": detail}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def check(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{"goal", "target", "measured", "met", "detail"}]`` for what ``doc`` measured."""
    results = doc["results"]
    goals: list[dict[str, Any]] = []
    text = _find(results, "clip-textual", "FP32")
    if text is not None:
        http, ref = _run(text, "http", 1), _run(text, "reference", 1)
        if http and ref:
            p50 = _ratio(http["latency_ms"]["p50"], ref["latency_ms"]["p50"])
            goals.append(_goal("text p50 over HTTP, concurrency 1 (× reference p50)", "≤ 0.6", p50,
                               p50 is not None and p50 <= 0.6,
                               f"{http['latency_ms']['p50']:.2f} vs {ref['latency_ms']['p50']:.2f} ms"))
        if http:
            tail = _ratio(http["latency_ms"]["p99"], http["latency_ms"]["p50"])
            goals.append(_goal("text p99 / p50 over HTTP, concurrency 1", "≤ 2", tail, tail is not None and tail <= 2,
                               f"p99 {http['latency_ms']['p99']:.2f} ms"))
        throughput = _ratio(_best(text, "http"), _best(text, "reference"))
        if throughput is not None:
            goals.append(_goal("text throughput over HTTP (× reference, best concurrency)", "≥ 1.67", throughput,
                               throughput >= 1.67))
        overhead = text["overhead"].get("http_over_worker_ms")
        if overhead is not None:
            goals.append(_goal("service overhead per text request (HTTP − worker time, median ms)", "≤ 0.5",
                               round(overhead, 3), overhead <= 0.5,
                               f"mean {text['overhead'].get('http_over_worker_mean_ms', 0):.3f} ms; HTTP − in-process "
                               f"{text['overhead'].get('http_minus_in_process_p50_ms', 0):+.3f} ms (medians)"))
    for result in results:
        if result["device"] != "cpu" or result["intra_op_threads"]:
            continue
        for mode in ("http", "in-process"):
            one, two = _run(result, mode, 1), _run(result, mode, 2)
            if one and two:
                change = _ratio(two["throughput_rps"], one["throughput_rps"])
                goals.append(_goal(f"{result['workload']} {result['precision']} {mode}: throughput at "
                                   "concurrency 2 / 1", "≥ 1", change, change is not None and change >= 1.0))
    for workload, precision, target in (("clip-visual", "FP32", 2.0), ("faces", "FP32", 3.0), ("clip-visual", "INT8", 4.0)):
        result = _find(results, workload, precision)
        if result is None:
            continue
        ratio = _ratio(_best(result, "http"), _best(result, "reference"))
        if ratio is None:
            continue
        detail = ""
        met = ratio >= target
        if precision == "INT8":
            cosine = result["agreement"].get("reference", {}).get("min_cosine")
            detail = f"min cosine to the FP32 reference {cosine}"
            met = met and cosine is not None and cosine >= 0.99
        goals.append(_goal(f"{workload} {precision} throughput over HTTP (× reference)", f"≥ {target:g}",
                           ratio, met, detail))
    for result in results:
        first = result.get("first_request")
        if not first or result["precision"] != "FP32" or result["intra_op_threads"]:
            continue
        for key, label in (("after_start", "after start"), ("after_unload", "after a TTL unload")):
            ratio = first.get(f"{key}_vs_steady")
            goals.append(_goal(f"{result['workload']}: first request {label} (× steady latency)", "≤ 2", ratio,
                               ratio is not None and ratio <= 2,
                               f"{first.get(key + '_ms')} vs {first['steady_ms']} ms; load "
                               + ", ".join(f"{k} {v} s" for k, v in first.get("load_time_s", {}).items())))
    peer = doc.get("peer_memory") or []
    fp32 = [r for r in results if r["precision"] == "FP32" and r["device"] == "cpu" and not r["intra_op_threads"]]
    ours = fp32[-1].get("service_memory") if fp32 else None
    if peer and ours and len(fp32) == 3:
        theirs = peer[-1]
        ratio = _ratio(ours["rss_mb"], theirs.get("rss_mb"))
        goals.append(_goal("service RSS, CLIP text + image + faces loaded (× reference)", "≤ 0.6", ratio,
                           ratio is not None and ratio <= 0.6,
                           f"{ours['rss_mb']} vs {theirs.get('rss_mb')} MB RSS; PSS {ours.get('pss_mb')} vs "
                           f"{theirs.get('pss_mb')} MB"))
    return goals


def format_goals(goals: Sequence[dict[str, Any]]) -> list[str]:
    if not goals:
        return []
    lines = ["", "issue 12 goals (ratios within this run)",
             f"  {'goal':<72}{'target':>8}{'measured':>10}  met  detail"]
    for goal in goals:
        measured = "–" if goal["measured"] is None else f"{goal['measured']:.3g}"
        met = {True: "yes", False: "NO", None: "–"}[goal["met"]]
        lines.append(f"  {goal['goal']:<72}{goal['target']:>8}{measured:>10}  {met:<4} {goal['detail']}")
    return lines
