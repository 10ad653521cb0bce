"""A LangGraph ``BaseStore`` over a Mnemo space (``pip install 'mnemo-client[langgraph]'``).

Each item is one memory: its value as JSON content, its id derived from (namespace,
key) so a ``put`` of an existing key supersedes the old memory in place; tags hold the
namespace (and each prefix of it, for ``search`` by prefix), the key, and the value's
top-level scalar fields (for ``filter``). A ``put`` of ``None`` forgets the item. Every
item is embedded (its ``index`` fields, or its whole value) so that ``search(query=…)``
ranks by similarity; a ``ttl`` (minutes) becomes the memory's expiry.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, Optional

from langchain_core.embeddings import Embeddings
from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from ..client import Mnemo
from ..errors import NotFound
from ..types import Filter, Memory

_NS = uuid.UUID("6f1e4c52-7d0a-4d5c-9b1e-2f7a0c3e9a11")


def _item_id(namespace: tuple[str, ...], key: str) -> str:
    return str(uuid.uuid5(_NS, json.dumps([list(namespace), key])))


def _ns(namespace: tuple[str, ...]) -> str:
    return "\x1f".join(namespace)


def _time(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1e6, tz=timezone.utc)


class MnemoStore(BaseStore):
    """LangGraph long-term memory in Mnemo space ``space`` (created on first use)."""

    supports_ttl = True

    def __init__(self, client: Mnemo, space: str, embedding: Embeddings) -> None:
        self.client = client
        self.space = space
        self.embedding = embedding
        self._ready = False

    def _ensure_space(self, dim: int) -> None:
        if self._ready:
            return
        try:
            self.client.spaces.describe(self.space)
        except NotFound:
            self.client.spaces.create(self.space, dim)
        self._ready = True

    # ---- BaseStore --------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return [self._one(op) for op in ops]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(None, self.batch, list(ops))

    def _one(self, op: Op) -> Result:
        if isinstance(op, GetOp):
            return self._get(op.namespace, op.key)
        if isinstance(op, PutOp):
            self._put(op)
            return None
        if isinstance(op, SearchOp):
            return self._search(op)
        if isinstance(op, ListNamespacesOp):
            return self._list_namespaces(op)
        raise ValueError(f"unknown operation {op!r}")

    # ---- operations -------------------------------------------------------------------

    def _item(self, m: Memory, score: Optional[float] = None) -> SearchItem:
        doc = json.loads(m.content)
        created = doc.get("created_at_us", m.recorded_at_us)
        return SearchItem(
            namespace=tuple(doc["namespace"]),
            key=doc["key"],
            value=doc["value"],
            created_at=_time(created),
            updated_at=_time(m.recorded_at_us),
            score=score,
        )

    def _get(self, namespace: tuple[str, ...], key: str) -> Optional[Item]:
        try:
            got = self.client.get(self.space, [_item_id(namespace, key)])
        except NotFound:
            return None
        if not got.memories:
            return None
        s = self._item(got.memories[0])
        return Item(value=s.value, key=s.key, namespace=s.namespace, created_at=s.created_at, updated_at=s.updated_at)

    def _put(self, op: PutOp) -> None:
        item_id = _item_id(op.namespace, op.key)
        if op.value is None:
            with contextlib.suppress(NotFound):
                self.client.forget(self.space, ids=[item_id])
            return
        previous = self._get(op.namespace, op.key)
        created_us = int(previous.created_at.timestamp() * 1e6) if previous else int(time.time() * 1e6)
        content = json.dumps(
            {"namespace": list(op.namespace), "key": op.key, "value": op.value, "created_at_us": created_us}
        )
        fields = op.index if isinstance(op.index, list) else None
        text = json.dumps({f: op.value.get(f) for f in fields}) if fields else json.dumps(op.value)
        vector = self.embedding.embed_documents([text])[0]
        self._ensure_space(len(vector))
        tags = {"lg.ns": _ns(op.namespace), "lg.key": op.key}
        for depth in range(1, len(op.namespace) + 1):
            tags[f"lg.ns{depth}"] = _ns(op.namespace[:depth])
        for k, v in op.value.items():
            if isinstance(v, (str, int, float, bool)):
                tags[f"v.{k}"] = json.dumps(v)
        expires = int((time.time() + op.ttl * 60) * 1e6) if op.ttl else None
        self.client.remember(
            self.space,
            content,
            vector,
            tags=tags,
            id=item_id,
            supersedes=item_id if previous else None,
            expires_at=expires,
        )

    def _filter(self, prefix: tuple[str, ...], where: Optional[dict[str, Any]]) -> Filter:
        tags: dict[str, Any] = {}
        if prefix:
            tags[f"lg.ns{len(prefix)}"] = _ns(prefix)
        for k, v in (where or {}).items():
            if isinstance(v, dict):
                raise ValueError("only equality filters are supported (a value, not an operator)")
            tags[f"v.{k}"] = json.dumps(v)
        return Filter(tags=tags)

    def _search(self, op: SearchOp) -> list[SearchItem]:
        f = self._filter(op.namespace_prefix, op.filter)
        try:
            if op.query:
                vector = self.embedding.embed_query(op.query)
                hits = self.client.recall(self.space, vector, k=op.limit + op.offset, filter=f)
                return [self._item(m, m.score) for m in hits[op.offset :]]
            out: list[SearchItem] = []
            for i, m in enumerate(self.client.export(self.space, filter=f)):
                if i >= op.offset + op.limit:
                    break
                if i >= op.offset:
                    out.append(self._item(m))
            return out
        except NotFound:
            return []

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        seen: set[tuple[str, ...]] = set()
        try:
            for m in self.client.export(self.space, filter=Filter(tags={"lg.ns": True})):
                ns = tuple(json.loads(m.content)["namespace"])
                seen.add(ns[: op.max_depth] if op.max_depth else ns)
        except NotFound:
            return []
        out = sorted(ns for ns in seen if all(_matches(ns, c) for c in op.match_conditions or ()))
        return out[op.offset : op.offset + op.limit]


def _matches(ns: tuple[str, ...], cond: Any) -> bool:
    path = tuple(cond.path)
    if len(path) > len(ns):
        return False
    part = ns[: len(path)] if cond.match_type == "prefix" else ns[-len(path) :]
    return all(p == "*" or p == n for p, n in zip(path, part))
