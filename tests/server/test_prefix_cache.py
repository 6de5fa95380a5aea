"""The prefix cache seen from outside: a session's next turn reports cached prompt tokens the way OpenAI
does, and /metrics counts hits, reused and computed prompt tokens, and the cache's size."""

import uuid

import pytest
from openai import OpenAI

from tests.conftest import metric

pytestmark = pytest.mark.server


def test_a_session_turn_reports_cached_tokens_and_metrics_count_them(server):
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    session = {"x-session-id": f"prefix-{uuid.uuid4().hex[:8]}"}
    hits, reused = (
        metric(server.url, "hfchain_prefix_cache_hits_total"),
        metric(server.url, 'hfchain_prefill_tokens_total{source="reused"}'),
    )
    usages = []
    for text in ["My name is Ada and I like tea.", "What is my name?"]:
        answer = client.chat.completions.create(
            model="any", messages=[{"role": "user", "content": text}], max_tokens=16, temperature=0,
            extra_headers=session,
        )  # fmt: skip
        usages.append(answer.usage)
    details = usages[1].prompt_tokens_details
    assert details is not None and 0 < details.cached_tokens < usages[1].prompt_tokens
    first = usages[0].prompt_tokens_details
    assert details.cached_tokens > (first.cached_tokens if first else 0)  # the first turn's whole history
    assert metric(server.url, "hfchain_prefix_cache_hits_total") >= hits + 1
    gained = metric(server.url, 'hfchain_prefill_tokens_total{source="reused"}') - reused
    assert gained >= details.cached_tokens
    assert metric(server.url, "hfchain_prefix_cache_tokens") > 0
