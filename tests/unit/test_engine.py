"""The engine's admission rules, without a model: tokens in flight, queue timeout, shutdown."""

import asyncio
import time

import pytest

from chains.backends.engine import BatchEngine, Completion, GenerationParams
from chains.errors import ModelNotReady, Overloaded, QueueTimeout


def test_tokens_in_flight_beyond_the_cap_get_429():
    engine = BatchEngine(max_tokens_in_flight=100)  # not started: submitted jobs stay queued
    engine.submit([1] * 20, GenerationParams(max_new_tokens=40))
    with pytest.raises(Overloaded, match="tokens in flight") as refused:
        engine.submit([1] * 20, GenerationParams(max_new_tokens=40))
    assert refused.value.status_code == 429 and refused.value.details["retry_after"] == 1
    assert engine.queued == 1


def test_a_lone_request_is_admitted_even_when_larger_than_the_cap():
    engine = BatchEngine(max_tokens_in_flight=10)
    engine.submit([1] * 20, GenerationParams(max_new_tokens=40))  # else it could never run
    assert engine.queued == 1


def test_waiting_past_the_queue_timeout_gets_503():
    engine = BatchEngine(queue_timeout=0.05)
    job = engine.submit([1, 2], GenerationParams())
    time.sleep(0.1)
    assert engine._expire_waiting() == []
    with pytest.raises(QueueTimeout, match="HFCHAIN_QUEUE_TIMEOUT") as timed_out:
        list(job.events())
    assert timed_out.value.status_code == 503 and engine.queued == 0


def test_a_cancelled_waiting_job_is_answered_without_running():
    engine = BatchEngine()

    async def run():
        job = engine.submit([1, 2, 3], GenerationParams(), asyncio.get_running_loop())
        job.cancel()
        engine._expire_waiting()
        return [item async for item in job.aevents()]

    assert asyncio.run(run()) == [Completion("", 3, 0, "cancelled")]


def test_stop_fails_queued_jobs_and_refuses_new_ones():
    engine = BatchEngine()
    job = engine.submit([1], GenerationParams())
    engine.stop()
    with pytest.raises(ModelNotReady, match="shutting down"):
        list(job.events())
    with pytest.raises(ModelNotReady):
        engine.submit([1], GenerationParams())


def test_joiners_are_taken_in_order_within_the_prefill_budget():
    engine = BatchEngine(max_prefill_tokens=1000)
    for length in (300, 300, 300, 50, 50):
        engine.submit([1] * length, GenerationParams())
    _, jobs = engine._take(free=16)
    assert [len(job.prompt) for job in jobs] == [300, 300, 300]  # a 4th would pad to 4 x 300 > 1000
    assert engine.queued == 2
    _, jobs = engine._take(free=1)
    assert [len(job.prompt) for job in jobs] == [50] and engine.queued == 1


def test_a_prompt_longer_than_the_prefill_budget_still_runs_alone():
    engine = BatchEngine(max_prefill_tokens=100)
    engine.submit([1] * 500, GenerationParams())
    engine.submit([1] * 10, GenerationParams())
    _, jobs = engine._take(free=16)
    assert [len(job.prompt) for job in jobs] == [500]
