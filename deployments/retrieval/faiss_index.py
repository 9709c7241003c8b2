"""Retrieval from a document index built with `python -m deployments.retrieval.index ingest`."""

from __future__ import annotations

import threading
from typing import Any, Literal

from pydantic import Field

from deployments.component import StrictModel, auto_device, register
from deployments.retrieval.index import (
    INDEX_NAME,
    MANIFEST,
    MINILM,
    DocumentIndex,
    Embedder,
    index_dir,
    not_ingested,
    open_index,
)
from deployments.retrieval.service import RetrievalService


@register("faiss_rag")
class FaissRetrieval(RetrievalService):
    """Serves the index as it is on disk: a re-ingest while serving is picked up at the next query.

    A missing or empty index fails the query, not the replica, so the other clusters start and
    this one works as soon as the documents are ingested.
    """

    class Options(StrictModel):
        index: str = Field("default", pattern=INDEX_NAME.pattern)
        root: str | None = None  # None: $OMNISERVE_INDEX_ROOT, else data/indexes
        embedding_model: str = MINILM
        device: Literal["auto", "cpu", "cuda"] = "auto"

    class Params(StrictModel):
        top_k: int = Field(3, ge=1)
        min_score: float | None = None  # cosine similarity; weaker chunks are left out

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        import torch

        opts = self.options
        device = auto_device(torch.cuda.is_available()) if opts.device == "auto" else opts.device
        self.embedder = Embedder(opts.embedding_model, device)
        self.embedder.encode(["warm up"])  # loads and runs the model once, so the first question is not slower
        self.directory = index_dir(opts.index, opts.root)
        self._index: DocumentIndex | None = None
        self._manifest_mtime: int | None = None
        self._reload = threading.Lock()

    def current_index(self) -> DocumentIndex:
        try:
            mtime = (self.directory / MANIFEST).stat().st_mtime_ns
        except FileNotFoundError:
            raise not_ingested(self.directory) from None
        with self._reload:
            if mtime != self._manifest_mtime:
                index = open_index(self.directory)
                built_with = index.settings["embedding_model"]
                if built_with != self.embedder.name:
                    raise ValueError(
                        f"index {self.options.index!r} was built with {built_with!r} but this stage embeds "
                        f"with {self.embedder.name!r}; re-ingest with --model {self.embedder.name}"
                    )
                self._index, self._manifest_mtime = index, mtime
            return self._index

    def retrieve(self, query: str, params: Params) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        index = self.current_index()
        hits = index.search(self.embedder.encode([query]), params.top_k)
        chunks = [
            {"id": chunk.id, "source": chunk.source, "text": chunk.text, "score": round(score, 4)}
            for chunk, score in hits
            if params.min_score is None or score >= params.min_score
        ]
        return chunks, {"index": self.options.index, "generation": index.generation}
