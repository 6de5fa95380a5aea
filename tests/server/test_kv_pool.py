"""A short soak on a tiny KV pool (40 blocks of 16 tokens): mixed traffic churns it, and every count and
bound holds: blocks add up, none is left held, the pool never grows, too large a request is refused
naming the setting. Counts and bounds only, never time."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import hfchain_server, metric

pytestmark = pytest.mark.server

BLOCK_BYTES = 16 * 30 * 2 * 3 * 64 * 4  # 16 tokens of the embedded model's float32 keys and values
BLOCKS = 40


@pytest.fixture(scope="module")
def small(embedded_backend):
    proc = hfchain_server(
        HFCHAIN_BACKEND="local", HFCHAIN_KV_CACHE_BYTES=str(BLOCKS * BLOCK_BYTES), HFCHAIN_MAX_NEW_TOKENS="16"
    ).wait("/ready")
    yield proc
    proc.stop()


def blocks(url: str) -> dict[str, float]:
    return {
        state: metric(url, f'hfchain_kv_blocks{{state="{state}"}}') for state in ("used", "cached", "free")
    }


def chat(url: str, text: str, session: str | None = None) -> int:
    headers = {"x-session-id": session} if session else {}
    body = {"model": "any", "messages": [{"role": "user", "content": text}], "max_tokens": 16}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=120).status_code


def traffic(url: str, round_: int) -> list[int]:
    """16 requests from 4 clients: distinct ~120-token prompts (more than the pool holds at once), a
    shared opening, and session turns."""
    opening = "You are a careful assistant who answers in one short sentence. " * 4
    texts = [
        f"Round {round_} request {i}: " + " ".join(f"word{round_}x{i}x{j}" for j in range(40))
        for i in range(8)
    ]
    texts += [opening + f"Question {round_}.{i}: name a colour." for i in range(4)]
    jobs = [(t, None) for t in texts] + [(f"Turn {round_}: say {i}.", f"soak-{i}") for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda job: chat(url, *job), jobs))


def test_mixed_traffic_churns_the_pool_and_every_block_is_accounted_for(small):
    assert metric(small.url, "hfchain_kv_pool_bytes") == BLOCKS * BLOCK_BYTES
    assert traffic(small.url, 0) == [200] * 16  # warm-up
    for round_ in range(1, 4):
        assert traffic(small.url, round_) == [200] * 16
        counts = blocks(small.url)
        assert sum(counts.values()) == BLOCKS and counts["used"] == 0  # nothing left held
    assert metric(small.url, "hfchain_kv_evictions_total") > 0  # the pool was full and reused its blocks
    assert metric(small.url, "hfchain_prefix_cache_hits_total") > 0  # and still served shared prefixes
    assert metric(small.url, "hfchain_kv_pool_bytes") == BLOCKS * BLOCK_BYTES  # it never grew


def test_a_request_larger_than_the_whole_pool_gets_503_naming_the_setting(small):
    body = {"model": "any", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 700}
    reply = httpx.post(f"{small.url}/v1/chat/completions", json=body, timeout=60)
    assert reply.status_code == 503
    assert "HFCHAIN_KV_CACHE_BYTES" in reply.text
