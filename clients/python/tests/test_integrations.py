"""LangChain VectorStore and LangGraph BaseStore against a real server."""

from __future__ import annotations

from langchain_core.embeddings import DeterministicFakeEmbedding

from mnemo import Mnemo
from mnemo.integrations.langchain import MnemoVectorStore
from mnemo.integrations.langgraph import MnemoStore

EMB = DeterministicFakeEmbedding(size=16)


def test_langchain_vector_store(client: Mnemo) -> None:
    store = MnemoVectorStore(client, "lc", EMB)
    texts = [f"fact number {i}" for i in range(30)]
    metas = [{"topic": "even" if i % 2 == 0 else "odd", "n": i} for i in range(30)]
    ids = store.add_texts(texts, metas)
    assert len(ids) == 30 and len(set(ids)) == 30
    # The fake embedding is a function of the text: the text itself comes first.
    (doc, score), *_ = store.similarity_search_with_score("fact number 7", k=3)
    assert doc.page_content == "fact number 7" and doc.id == ids[7]
    assert doc.metadata == {"topic": "odd", "n": "7"}
    assert score > 0.99
    evens = store.similarity_search("fact number 7", k=30, filter={"topic": "even"})
    assert len(evens) == 15 and all(d.metadata["topic"] == "even" for d in evens)
    assert [d.page_content for d in store.get_by_ids([ids[3]])] == ["fact number 3"]
    assert store.delete([ids[7], ids[8]])
    left = {d.page_content for d in store.similarity_search("fact number 7", k=30)}
    assert len(left) == 28 and "fact number 7" not in left
    again = MnemoVectorStore.from_texts(["one more"], EMB, client=client, space="lc")
    assert again.similarity_search("one more", k=1)[0].page_content == "one more"


def test_langgraph_store(client: Mnemo) -> None:
    store = MnemoStore(client, "lg", EMB)
    assert store.get(("users", "u1"), "prefs") is None
    store.put(("users", "u1"), "prefs", {"food": "pizza", "lang": "en"})
    store.put(("users", "u1"), "city", {"name": "Oslo", "lang": "no"})
    store.put(("users", "u2"), "prefs", {"food": "sushi", "lang": "en"})
    item = store.get(("users", "u1"), "prefs")
    assert item is not None and item.value == {"food": "pizza", "lang": "en"}
    # An update supersedes in place: one item, the new value, created_at kept.
    store.put(("users", "u1"), "prefs", {"food": "pasta", "lang": "en"})
    updated = store.get(("users", "u1"), "prefs")
    assert updated is not None and updated.value["food"] == "pasta"
    assert updated.created_at == item.created_at and updated.updated_at >= item.updated_at
    u1 = store.search(("users", "u1"))
    assert sorted(i.key for i in u1) == ["city", "prefs"]
    assert len(store.search(("users",))) == 3
    en = store.search(("users",), filter={"lang": "en"})
    assert sorted((i.namespace, i.key) for i in en) == [(("users", "u1"), "prefs"), (("users", "u2"), "prefs")]
    best = store.search(("users",), query='{"food": "sushi", "lang": "en"}', limit=1)
    assert best[0].namespace == ("users", "u2") and best[0].score is not None
    assert store.list_namespaces(prefix=("users",)) == [("users", "u1"), ("users", "u2")]
    store.delete(("users", "u1"), "city")
    assert store.get(("users", "u1"), "city") is None
    assert [i.key for i in store.search(("users", "u1"))] == ["prefs"]
