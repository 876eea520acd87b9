"""WorkerPool with real spawned worker processes running the pipeline double."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from immich_ml.errors import (
    ImmichMLError,
    InvalidInput,
    NotReady,
    Overloaded,
    UnknownModel,
    WorkerCrashed,
    WorkerTimeout,
)
from immich_ml.schemas import Entry, parse_entries
from immich_ml.workers.pool import Prediction, WorkerPool

TEXT = parse_entries(b'{"clip":{"textual":{"modelName":"m"}}}')
PoolFactory = Callable[..., WorkerPool]
VISUAL = parse_entries(b'{"clip":{"visual":{"modelName":"v"}}}')


def body(prediction: Prediction) -> dict[str, Any]:
    parsed: dict[str, Any] = orjson.loads(prediction.body)
    return parsed


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def slot_info(pool: WorkerPool, index: int = 0) -> dict[str, Any]:
    return pool.snapshot()[index]


def predict_later(pool: WorkerPool, entries: tuple[Entry, ...], text: str) -> Callable[[], Any]:
    """Start a prediction in a thread; the returned callable gives its result or error."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = pool.predict(entries, text=text)
        except BaseException as error:
            outcome["value"] = error

    thread = threading.Thread(target=run)
    thread.start()

    def result() -> Any:
        thread.join(30)
        assert not thread.is_alive()
        return outcome["value"]

    return result


def test_answer_crosses_process_with_timings(make_pool: PoolFactory) -> None:
    pool = make_pool()
    prediction = pool.predict(TEXT, text="hello")
    answer = body(prediction)
    assert orjson.loads(answer["clip"]) == [0.5, 0.5, -0.25]
    assert answer["servedBy"]["pid"] == slot_info(pool)["pid"] != os.getpid()
    assert prediction.meta["timings"]["inference"] >= 0
    assert "serialize" in prediction.meta["timings"]


def test_image_bytes_arrive_intact(make_pool: PoolFactory) -> None:
    pool = make_pool()
    image = os.urandom(3 * 2**20 + 17)
    answer = body(pool.predict(VISUAL, image=image))
    assert answer["imageSha256"] == hashlib.sha256(image).hexdigest()
    assert answer["imageHeight"] == len(image)


def test_two_device_ids_get_one_worker_each_and_both_serve(make_pool: PoolFactory) -> None:
    pool = make_pool({"MACHINE_LEARNING_DEVICE_IDS": "0,1", "MACHINE_LEARNING_WORKERS": "2"})
    assert [(s["slot"], s["target"]) for s in pool.snapshot()] == [(0, "cpu:0"), (1, "cpu:1")]
    served = {body(pool.predict(TEXT, text="x"))["servedBy"]["target"] for _ in range(6)}
    assert served == {"cpu:0", "cpu:1"}
    assert all(s["requests"] >= 1 for s in pool.snapshot())


def test_least_loaded_worker_takes_the_next_request(make_pool: PoolFactory) -> None:
    pool = make_pool({"MACHINE_LEARNING_DEVICE_IDS": "0,1", "MACHINE_LEARNING_WORKERS": "2"})
    busy = predict_later(pool, TEXT, "sleep:1.0")
    wait_for(lambda: sum(s["inflight"] for s in pool.snapshot()) == 1)
    busy_slot = next(s["slot"] for s in pool.snapshot() if s["inflight"])
    targets = {body(pool.predict(TEXT, text="x"))["servedBy"]["target"] for _ in range(4)}
    assert targets == {f"cpu:{1 - busy_slot}"}
    assert isinstance(busy(), Prediction)


def test_worker_errors_keep_their_kind_and_message(make_pool: PoolFactory) -> None:
    pool = make_pool()
    with pytest.raises(UnknownModel, match="Valid names: a, b"):
        pool.predict(TEXT, text="raise:unknown")
    with pytest.raises(InvalidInput, match="reject this input"):
        pool.predict(TEXT, text="raise:invalid")
    with pytest.raises(ImmichMLError) as caught:
        pool.predict(TEXT, text="raise:bug")
    assert caught.value.status == 500 and caught.value.message == "Internal server error"
    assert "a bug inside" not in str(caught.value)
    assert slot_info(pool)["errors"] == 3
    assert body(pool.predict(TEXT, text="ok"))["clip"]


def test_requests_run_concurrently_inside_a_worker(make_pool: PoolFactory) -> None:
    pool = make_pool({"MACHINE_LEARNING_REQUEST_THREADS": "4"})
    started = time.monotonic()
    with ThreadPoolExecutor(4) as executor:
        list(executor.map(lambda _: pool.predict(TEXT, text="sleep:1.0"), range(4)))
    # One at a time would take 4 s.
    assert time.monotonic() - started < 2.5


def test_full_queues_answer_overloaded_at_once(make_pool: PoolFactory) -> None:
    pool = make_pool({"MACHINE_LEARNING_REQUEST_THREADS": "1", "MACHINE_LEARNING_QUEUE_DEPTH": "1"})
    first = predict_later(pool, TEXT, "sleep:3.0")
    second = predict_later(pool, TEXT, "sleep:0.1")
    wait_for(lambda: slot_info(pool)["inflight"] == 2)
    assert slot_info(pool)["queue_depth"] == 1
    started = time.monotonic()
    with pytest.raises(Overloaded) as caught:
        pool.predict(TEXT, text="x")
    assert time.monotonic() - started < 1.5
    assert caught.value.retry_after_s >= 1
    assert isinstance(first(), Prediction) and isinstance(second(), Prediction)
    assert body(pool.predict(TEXT, text="x"))["clip"]


@pytest.mark.parametrize(
    ("script", "expected"),
    [("kill:SIGSEGV", "killed by signal SIGSEGV"), ("exit:7", "exited with code 7")],
)
def test_worker_death_fails_in_flight_and_worker_is_replaced(
    make_pool: PoolFactory, script: str, expected: str
) -> None:
    pool = make_pool()
    old_pid = slot_info(pool)["pid"]
    with pytest.raises(WorkerCrashed, match=expected) as caught:
        pool.predict(TEXT, text=script)
    assert caught.value.status == 503 and "worker 0 (cpu:0)" in caught.value.message
    # The next request waits for the replacement instead of failing.
    answer = body(pool.predict(TEXT, text="again"))
    info = slot_info(pool)
    assert answer["servedBy"]["pid"] == info["pid"] != old_pid
    assert info["restarts"] == 1 and info["state"] == "ready"
    assert expected in info["last_error"]


def test_sigkill_from_outside_mid_request_is_noticed_at_once(make_pool: PoolFactory) -> None:
    pool = make_pool({"MACHINE_LEARNING_REQUEST_THREADS": "2"})
    slow = predict_later(pool, TEXT, "sleep:20")
    queued = predict_later(pool, TEXT, "sleep:20")
    wait_for(lambda: slot_info(pool)["inflight"] == 2)
    os.kill(slot_info(pool)["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    for outcome in (slow(), queued()):
        assert isinstance(outcome, WorkerCrashed)
        assert "worker 0 (cpu:0) was killed by signal SIGKILL" in outcome.message
    assert time.monotonic() - killed_at < 2.0
    recovered = time.monotonic()
    assert body(pool.predict(TEXT, text="x"))["clip"]
    assert time.monotonic() - recovered < 10.0


def test_request_over_worker_timeout_restarts_the_worker(make_pool: PoolFactory) -> None:
    pool = make_pool({"MACHINE_LEARNING_WORKER_TIMEOUT": "1"})
    old_pid = slot_info(pool)["pid"]
    started = time.monotonic()
    with pytest.raises(WorkerTimeout, match="MACHINE_LEARNING_WORKER_TIMEOUT") as caught:
        pool.predict(TEXT, text="sleep:30")
    assert caught.value.status == 504
    assert 0.9 < time.monotonic() - started < 5.0
    assert body(pool.predict(TEXT, text="x"))["servedBy"]["pid"] != old_pid
    assert slot_info(pool)["restarts"] == 1


def test_worker_timeout_counts_run_time_not_time_queued(make_pool: PoolFactory) -> None:
    # Before: the deadline started when the request was queued, so the third of three 1.2 s
    # requests on one thread (queued for 2.4 s) hit the 2 s timeout and the worker was killed.
    pool = make_pool({"MACHINE_LEARNING_WORKER_TIMEOUT": "2", "MACHINE_LEARNING_REQUEST_THREADS": "1"})
    pid = slot_info(pool)["pid"]
    results = [predict_later(pool, TEXT, "sleep:1.2") for _ in range(3)]
    for result in results:
        outcome = result()
        assert not isinstance(outcome, BaseException), outcome
    assert slot_info(pool)["pid"] == pid and slot_info(pool)["restarts"] == 0


def test_worker_that_cannot_start_is_reported_and_not_waited_for(make_pool: PoolFactory) -> None:
    pool = make_pool(factory="pipeline_double:FailingPipeline", wait=False)
    wait_for(lambda: slot_info(pool)["state"] == "failed")
    assert not pool.is_ready()
    assert "self-test failed: no such device" in slot_info(pool)["last_error"]
    started = time.monotonic()
    with pytest.raises(NotReady, match="could start.*self-test failed"):
        pool.predict(TEXT, text="x")
    assert time.monotonic() - started < 1.0


def test_requests_wait_for_a_starting_worker(make_pool: PoolFactory) -> None:
    pool = make_pool(factory="pipeline_double:SlowStartPipeline", wait=False)
    assert slot_info(pool)["state"] == "starting" and not pool.is_ready()
    assert body(pool.predict(TEXT, text="x"))["clip"]
    assert pool.is_ready()


def test_status_is_answered_while_every_request_thread_is_busy(make_pool: PoolFactory) -> None:
    pool = make_pool({"MACHINE_LEARNING_REQUEST_THREADS": "1"})
    pool.predict(TEXT, text="warm")
    busy = predict_later(pool, TEXT, "sleep:3")
    wait_for(lambda: pool.health()[0]["worker"]["running"] == 1)
    started = time.monotonic()
    report = pool.health(timeout=2.0)
    assert time.monotonic() - started < 1.5
    assert report[0]["worker"]["running"] == 1
    assert [m["name"] for m in report[0]["models"]] == ["m"]
    assert isinstance(busy(), Prediction)


def test_preload_shows_at_start_and_idle_models_expire(make_pool: PoolFactory) -> None:
    pool = make_pool({
        "MACHINE_LEARNING_PRELOAD__CLIP__TEXTUAL": "pre",
        "MACHINE_LEARNING_MODEL_TTL": "1",
        "MACHINE_LEARNING_MODEL_TTL_POLL_S": "1",
    })
    models = pool.health()[0]["models"]
    assert [(m["name"], m["ttl_remaining_s"]) for m in models] == [("pre", None)]
    pool.predict(TEXT, text="x")
    assert {m["name"] for m in pool.health()[0]["models"]} == {"pre", "m"}
    wait_for(lambda: {m["name"] for m in pool.health()[0]["models"]} == {"pre"}, timeout=5)


def test_cpu_placement_adds_a_cpu_worker_for_those_models(make_pool: PoolFactory) -> None:
    pool = make_pool({
        "MACHINE_LEARNING_DEVICE": "openvino",
        "MACHINE_LEARNING_PLACEMENT__CLIP__TEXTUAL": "cpu",
        "MACHINE_LEARNING_PRELOAD__CLIP__TEXTUAL": "t",
        "MACHINE_LEARNING_PRELOAD__CLIP__VISUAL": "v",
    })
    report = pool.health()
    assert [(w["role"], w["target"]) for w in report] == [("device", "openvino:0"), ("cpu", "cpu:0")]
    assert [m["name"] for m in report[0]["models"]] == ["v"]
    assert [m["name"] for m in report[1]["models"]] == ["t"]
    assert body(pool.predict(TEXT, text="q"))["servedBy"]["target"] == "cpu:0"
    assert body(pool.predict(VISUAL, image=b"img"))["servedBy"]["target"] == "openvino:0"


def test_cpu_placement_is_moot_when_the_device_is_the_cpu(make_pool: PoolFactory) -> None:
    pool = make_pool({
        "MACHINE_LEARNING_DEVICE": "auto",
        "MACHINE_LEARNING_PLACEMENT__CLIP__TEXTUAL": "cpu",
        "MACHINE_LEARNING_PRELOAD__CLIP__TEXTUAL": "t",
    })
    report = pool.health()
    assert [(w["role"], w["target"]) for w in report] == [("device", "cpu:0")]
    assert [m["name"] for m in report[0]["models"]] == ["t"]


def test_close_stops_every_worker(make_pool: PoolFactory) -> None:
    pool = make_pool({"MACHINE_LEARNING_DEVICE_IDS": "0,1", "MACHINE_LEARNING_WORKERS": "2"})
    pids = [s["pid"] for s in pool.snapshot()]
    pool.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert [s["state"] for s in pool.snapshot()] == ["stopped", "stopped"]
    with pytest.raises(NotReady):
        pool.predict(TEXT, text="x")


def test_kill_while_large_payloads_are_being_written(make_pool: PoolFactory) -> None:
    pool = make_pool({"MACHINE_LEARNING_REQUEST_THREADS": "4"})
    image = os.urandom(8 * 2**20)
    stop = threading.Event()
    outcomes: list[Any] = []

    def client() -> None:
        while not stop.is_set():
            try:
                outcomes.append(pool.predict(VISUAL, image=image))
            except Exception as error:
                outcomes.append(error)

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    wait_for(lambda: len(outcomes) >= 4)
    for _ in range(3):
        pid = slot_info(pool)["pid"]
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: slot_info(pool)["state"] == "ready" and slot_info(pool)["pid"] != pid)
    stop.set()
    for thread in clients:
        thread.join(30)
    failures = [o for o in outcomes if not isinstance(o, Prediction)]
    assert failures and all(isinstance(f, WorkerCrashed) for f in failures), failures
    assert isinstance(pool.predict(VISUAL, image=b"fine"), Prediction)


def test_models_placed_on_a_device_id_run_only_on_that_devices_workers(make_pool: PoolFactory) -> None:
    # CPU slots stand in for two GPUs: CLIP image pinned to device 1, everything else anywhere.
    pool = make_pool({
        "MACHINE_LEARNING_DEVICE_IDS": "0,1",
        "MACHINE_LEARNING_WORKERS": "4",
        "MACHINE_LEARNING_PLACEMENT__CLIP__VISUAL": "cuda:1",
        "MACHINE_LEARNING_PRELOAD__CLIP__VISUAL": "v",
        "MACHINE_LEARNING_PRELOAD__CLIP__TEXTUAL": "t",
    })
    report = pool.health()
    assert [w["device_id"] for w in report] == ["0", "1", "0", "1"]
    assert [w["placed_here"] for w in report] == [[], ["clip/visual"], [], ["clip/visual"]]
    for worker in report:  # only device 1's workers preload the pinned model
        names = [m["name"] for m in worker["models"]]
        assert names == (["t", "v"] if worker["device_id"] == "1" else ["t"]), (worker["slot"], names)
    served = {body(pool.predict(VISUAL, image=b"img"))["servedBy"]["target"] for _ in range(8)}
    assert served == {"cpu:1"}
    anywhere = {body(pool.predict(TEXT, text="x"))["servedBy"]["target"] for _ in range(8)}
    assert anywhere == {"cpu:0", "cpu:1"}
