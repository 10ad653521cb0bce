"""A LangChain ``VectorStore`` over a Mnemo space (``pip install 'mnemo-client[langchain]'``).

Metadata values are stored as tags (strings); ``filter={"key": "value"}`` (or a
``mnemo.Filter``) restricts a search. Scores are Mnemo's similarity (cosine by default).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from ..client import Mnemo
from ..errors import NotFound
from ..types import FilterLike, Memory


def _tags(metadata: Optional[dict[str, Any]]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (metadata or {}).items()}


def _document(m: Memory) -> Document:
    return Document(page_content=m.content, metadata=dict(m.tags), id=m.id)


class MnemoVectorStore(VectorStore):
    """Texts embedded by ``embedding`` and stored in ``space`` (created with the
    embedding's dimension if it does not exist)."""

    def __init__(self, client: Mnemo, space: str, embedding: Embeddings, *, batch_size: int = 512) -> None:
        self.client = client
        self.space = space
        self._embedding = embedding
        self._batch = batch_size
        self._ready = False

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    def _ensure_space(self, dim: int) -> None:
        if self._ready:
            return
        try:
            self.client.spaces.describe(self.space)
        except NotFound:
            self.client.spaces.create(self.space, dim)
        self._ready = True

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Optional[list[dict[str, Any]]] = None,
        *,
        ids: Optional[list[str]] = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embeds and stores ``texts`` through one session; returns their ids (UUIDs)."""
        texts = list(texts)
        if not texts:
            return []
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(metadatas)} metadatas")
        ids = [i or str(uuid.uuid4()) for i in ids] if ids is not None else [str(uuid.uuid4()) for _ in texts]
        vectors = self._embedding.embed_documents(texts)
        self._ensure_space(len(vectors[0]))
        tags = [_tags(metadatas[i] if metadatas else None) for i in range(len(texts))]
        with self.client.session(self.space, batch_size=self._batch) as s:
            s.observe_many(vectors, texts, tags=tags, ids=list(ids))
        return list(ids)

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: FilterLike = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The ``k`` stored texts nearest ``query``, with their similarity."""
        return self.similarity_search_by_vector_with_score(self._embedding.embed_query(query), k, filter=filter)

    def similarity_search_by_vector_with_score(
        self, embedding: Sequence[float], k: int = 4, filter: FilterLike = None
    ) -> list[tuple[Document, float]]:
        try:
            hits = self.client.recall(self.space, embedding, k=k, filter=filter)
        except NotFound:
            return []
        return [(_document(m), m.score) for m in hits]

    def similarity_search(self, query: str, k: int = 4, filter: FilterLike = None, **kwargs: Any) -> list[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter=filter)]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: FilterLike = None, **kwargs: Any
    ) -> list[Document]:
        return [d for d, _ in self.similarity_search_by_vector_with_score(embedding, k, filter=filter)]

    def _select_relevance_score_fn(self) -> Any:
        # Cosine similarity in [-1, 1] → relevance in [0, 1].
        return lambda score: (1.0 + score) / 2.0

    def delete(self, ids: Optional[list[str]] = None, **kwargs: Any) -> Optional[bool]:
        """Forgets the memories with these ids (they leave the disk at the next erase)."""
        if not ids:
            return False
        self.client.forget(self.space, ids=ids)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return [_document(m) for m in self.client.get(self.space, list(ids)).memories]

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: Optional[list[dict[str, Any]]] = None,
        *,
        ids: Optional[list[str]] = None,
        client: Optional[Mnemo] = None,
        space: str = "langchain",
        **kwargs: Any,
    ) -> MnemoVectorStore:
        store = cls(client or Mnemo(), space, embedding)
        store.add_texts(texts, metadatas, ids=ids)
        return store
