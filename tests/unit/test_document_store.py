"""The document store's contract on SQLite (the default) and on PostgreSQL + pgvector: collections per
tenant, documents replaced atomically and unchanged ones skipped, deletes gone from search at once, hybrid
search with filters, a failed document leaving the collection as it was, writers that do not race."""

from __future__ import annotations

import threading

import pytest

from chains.errors import Conflict, InvalidInput, NotFound
from chains.knowledge.collections import fuse
from tests.unit.knowledge_fakes import WordsEncoder, knowledge_over

POEM = (
    "The harbour lights were burning when the ferry left at dawn. Gulls followed the wake for an hour.\n\n"
    "Captain Ingrid Vasquez logged the crossing as calm, with a north wind of twelve knots.\n\n"
    "By noon the island of Skarholmen was in sight, grey cliffs under a pale sky."
)
RECIPE = (
    "Whisk two eggs with sugar, fold in the flour, and bake the sponge for twenty minutes at 180 degrees."
)


@pytest.fixture(params=["sqlite", "pgvector"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'documents.db'}"
    return request.getfixturevalue("pgvector").new_database()


@pytest.fixture
def knowledge(url):
    return knowledge_over(url)


def add(knowledge, tenant, name, documents):
    prepared = [knowledge.prepare_text(i, text, meta) for i, text, meta in documents]
    return knowledge.ingest(tenant, name, prepared)


def ids(results):
    return [r["document_id"] for r in results]


def test_collections_belong_to_their_tenant(knowledge):
    knowledge.create("a", "notes", "team notes")
    knowledge.create("b", "notes")
    with pytest.raises(Conflict, match="exists"):
        knowledge.create("a", "notes")
    add(knowledge, "a", "notes", [("log", POEM, None)])
    assert knowledge.describe("a", "notes")["documents"] == 1
    assert knowledge.describe("b", "notes")["documents"] == 0
    assert knowledge.names("a") == ["notes"] and knowledge.names("c") == []
    with pytest.raises(NotFound):
        knowledge.describe("c", "notes")
    with pytest.raises(NotFound):
        knowledge.search("c", "notes", "ferry")
    assert knowledge.search("b", "notes", "ferry") == []
    knowledge.delete("a", "notes")
    assert knowledge.names("a") == [] and knowledge.names("b") == ["notes"]


def test_chunks_keep_offsets_and_the_collection_counts_them(knowledge):
    knowledge.create("t", "c")
    result = add(knowledge, "t", "c", [("log", POEM, {"ship": "ferry"})])
    assert result["added"] == 1 and result["chunks"] >= 3
    described = knowledge.describe("t", "c")
    assert described["chunks"] == result["chunks"] and described["tokens"] > 0
    for hit in knowledge.search("t", "c", "captain ferry crossing island", k=10, mode="vector"):
        assert POEM[hit["start"] : hit["end"]] == hit["text"]
        assert hit["metadata"] == {"ship": "ferry"}


def test_resending_a_document_replaces_it_and_unchanged_ones_are_skipped(knowledge):
    encoder = knowledge.embeddings.encoder
    knowledge.create("t", "c")
    add(knowledge, "t", "c", [("log", POEM, None), ("cake", RECIPE, None)])
    calls = encoder.calls
    again = add(knowledge, "t", "c", [("log", POEM, None), ("cake", RECIPE, None)])
    assert (again["unchanged"], again["added"], again["chunks"]) == (2, 0, 0)
    assert encoder.calls == calls  # nothing embedded
    changed = add(knowledge, "t", "c", [("log", "The ferry was cancelled because of fog.", None)])
    assert changed["replaced"] == 1
    assert knowledge.search("t", "c", "Vasquez", mode="text") == []  # the old chunks are gone
    assert ids(knowledge.search("t", "c", "fog cancelled", mode="text")) == ["log"]
    assert knowledge.describe("t", "c")["documents"] == 2


def test_a_deleted_document_is_gone_from_search_at_once(knowledge):
    knowledge.create("t", "c")
    add(knowledge, "t", "c", [("log", POEM, None), ("cake", RECIPE, None)])
    assert "cake" in ids(knowledge.search("t", "c", "bake the sponge"))
    assert knowledge.delete_document("t", "c", "cake")["deleted"]
    assert "cake" not in ids(knowledge.search("t", "c", "bake the sponge", k=20))
    with pytest.raises(NotFound):
        knowledge.delete_document("t", "c", "cake")


def test_text_search_finds_rare_names_and_hybrid_keeps_them(knowledge):
    knowledge.create("t", "c")
    add(knowledge, "t", "c", [("log", POEM, None), ("cake", RECIPE, None)])
    text = knowledge.search("t", "c", "Skarholmen", mode="text")
    assert ids(text) == ["log"] and "Skarholmen" in text[0]["text"]
    hybrid = knowledge.search("t", "c", "Skarholmen cliffs", k=3)
    assert hybrid[0]["document_id"] == "log" and "Skarholmen" in hybrid[0]["text"]
    assert hybrid[0]["vector_score"] is not None and hybrid[0]["text_score"] is not None


def test_filters_match_metadata_values_and_document_ids(knowledge):
    knowledge.create("t", "c")
    docs = [
        ("a", "ferry crossing report", {"year": 2023, "team": "sea"}),
        ("b", "ferry crossing report", {"year": 2024, "team": "sea"}),
        ("c", "ferry crossing report", {"year": 2024, "team": "land", "draft": True}),
    ]
    add(knowledge, "t", "c", docs)
    for mode in ("hybrid", "vector", "text"):
        search = knowledge.search
        assert sorted(ids(search("t", "c", "ferry", 10, {"year": 2024}, mode))) == ["b", "c"]
        assert ids(search("t", "c", "ferry", 10, {"year": 2024, "team": "sea"}, mode)) == ["b"]
        assert sorted(ids(search("t", "c", "ferry", 10, {"team": ["land", "sea"]}, mode))) == ["a", "b", "c"]
        assert ids(search("t", "c", "ferry", 10, {"document_id": "a"}, mode)) == ["a"]
        assert ids(search("t", "c", "ferry", 10, {"draft": True}, mode)) == ["c"]
        assert search("t", "c", "ferry", 10, {"year": 1999}, mode) == []


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("year=2024", "must be an object"),
        ({"bad key!": 1}, "filter key"),
        ({"year": {"$gt": 1}}, "string, number or boolean"),
        ({"year": []}, "string, number or boolean"),
    ],
)
def test_bad_filters_and_queries_are_refused(knowledge, where, message):
    knowledge.create("t", "c")
    with pytest.raises(InvalidInput, match=message):
        knowledge.search("t", "c", "ferry", 5, where)


def test_bad_search_values_are_refused(knowledge):
    knowledge.create("t", "c")
    for query, k, mode in [("  ", 5, "hybrid"), ("x", 0, "hybrid"), ("x", 101, "hybrid"), ("x", 5, "fuzzy")]:
        with pytest.raises(InvalidInput):
            knowledge.search("t", "c", query, k, None, mode)


def test_a_failed_document_leaves_the_collection_as_it_was(url):
    knowledge = knowledge_over(url, WordsEncoder(fail_on="BOOM"))
    knowledge.create("t", "c")
    add(knowledge, "t", "c", [("log", POEM, None)])
    before = (knowledge.describe("t", "c")["chunks"], knowledge.documents("t", "c"))
    with pytest.raises(RuntimeError, match="BOOM"):
        add(knowledge, "t", "c", [("log", POEM.replace("calm", "BOOM"), None)])
    assert (knowledge.describe("t", "c")["chunks"], knowledge.documents("t", "c")) == before
    assert ids(knowledge.search("t", "c", "Vasquez calm", mode="text")) == ["log"]


def test_concurrent_replacements_of_one_document_leave_one_whole_version(knowledge):
    knowledge.create("t", "c")
    versions = [f"Version {i}: " + POEM.replace("twelve", f"{i} and twelve") for i in range(6)]
    errors = []

    def put(text):
        try:
            add(knowledge, "t", "c", [("log", text, None)])
        except Exception as error:  # any error fails the test below
            errors.append(error)

    threads = [threading.Thread(target=put, args=(text,)) for text in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    [document] = knowledge.documents("t", "c")
    hits = knowledge.search("t", "c", "Version harbour Vasquez Skarholmen", k=50, mode="vector")
    assert len(hits) == document["chunks"]  # no chunks of another version left behind
    [kept] = [text for text in versions if text.startswith(hits_in_order(hits)[0]["text"])]
    assert all(kept[h["start"] : h["end"]] == h["text"] for h in hits)  # every chunk of that one version


def hits_in_order(hits):
    return sorted(hits, key=lambda h: h["start"])


def test_another_writer_is_seen_at_the_next_search(url):
    reader, writer = knowledge_over(url), knowledge_over(url)
    reader.create("t", "c")
    assert reader.search("t", "c", "ferry", mode="vector") == []  # the reader caches an empty collection
    add(writer, "t", "c", [("log", POEM, None)])
    assert ids(reader.search("t", "c", "ferry harbour", mode="vector"))[0] == "log"
    writer.delete_document("t", "c", "log")
    assert reader.search("t", "c", "ferry harbour", mode="vector") == []


def test_a_collection_made_with_another_encoder_is_refused_with_the_fix(url):
    knowledge = knowledge_over(url)
    knowledge.create("t", "c")
    other = knowledge_over(url)
    other.store.encoder = "another-encoder"
    with pytest.raises(InvalidInput, match="HFCHAIN_EMBEDDING_MODEL"):
        other.search("t", "c", "ferry")


def test_reciprocal_rank_fusion_rewards_agreement():
    fused = fuse([(1, 0.9), (2, 0.8), (3, 0.7)], [(3, 9.0), (4, 8.0)], 4)
    assert fused[0][0] == 3  # ranked by both lists
    assert {chunk for chunk, _ in fused} == {1, 2, 3, 4}
    assert fuse([(1, 0.9)], [], 5) == [(1, 0.9)] and fuse([], [(4, 2.0)], 5) == [(4, 2.0)]


def test_many_small_documents_are_embedded_in_few_encoder_calls(url):
    knowledge = knowledge_over(url)
    knowledge.create("t", "c")
    calls = knowledge.embeddings.encoder.calls
    result = add(knowledge, "t", "c", [(f"n{i}", f"Note {i} about the harbour.", None) for i in range(300)])
    assert result["added"] == 300 and result["chunks"] == 300
    assert knowledge.embeddings.encoder.calls - calls == 2  # groups of 256 chunks, across documents
    assert knowledge.describe("t", "c")["documents"] == 300


def test_stop_words_alone_find_nothing_and_a_common_word_still_finds(knowledge):
    knowledge.create("t", "c")
    add(knowledge, "t", "c", [("log", POEM, None)])
    assert knowledge.search("t", "c", "what is the", mode="text") == []
    assert ids(knowledge.search("t", "c", "what is the ferry", mode="text")) == ["log"]


def test_in_a_large_store_words_in_most_chunks_do_not_drown_a_rare_one(tmp_path):
    knowledge = knowledge_over(f"sqlite:///{tmp_path / 'big.db'}")
    knowledge.create("t", "c")
    notes = [(f"n{i}", f"Harbour note {i}: the harbour was quiet.", None) for i in range(2100)]
    add(knowledge, "t", "c", [*notes, ("rare", "The harbour master is Ingrid Vasquez.", None)])
    found = knowledge.search("t", "c", "harbour Vasquez", k=3, mode="text")
    assert ids(found)[0] == "rare"
    assert len(knowledge.search("t", "c", "harbour", k=3, mode="text")) == 3  # a common word alone finds


def test_a_document_stored_after_its_collection_was_deleted_reaches_no_other_collection(knowledge):
    knowledge.create("alice", "secret")
    prepared = [knowledge.prepare_text("plan", "Alice's merger plan: acquire Zorbatech.")]
    row = knowledge.store.usable("alice", "secret")
    knowledge.delete("alice", "secret")
    knowledge.create("bob", "notes")
    with pytest.raises(NotFound, match="deleted"):
        knowledge.store.put_document(row.id, prepared[0].row(), prepared[0].chunks, [[0.1] * 64])
    assert knowledge.store.usable("bob", "notes").id != row.id  # ids are never reused
    assert knowledge.documents("bob", "notes") == [] and knowledge.search("bob", "notes", "Zorbatech") == []


def test_the_sqlite_vector_cache_keeps_within_its_bytes(tmp_path, monkeypatch):
    from chains.knowledge import sqlite_store

    monkeypatch.setattr(sqlite_store, "VECTOR_CACHE_BYTES", 2000)  # one small collection (1,392 bytes)
    knowledge = knowledge_over(f"sqlite:///{tmp_path / 'documents.db'}")
    for name in ("first", "second"):
        knowledge.create("a", name)
        add(knowledge, "a", name, [("log", POEM, None)])
        assert ids(knowledge.search("a", name, "ferry"))[:1] == ["log"]
    cache = knowledge.store._cache
    assert cache.currsize <= 2000 and len(cache) == 1  # the least recently searched went
    assert ids(knowledge.search("a", "first", "ferry"))[:1] == ["log"]  # and is reloaded when searched
