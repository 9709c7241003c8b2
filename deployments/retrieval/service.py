"""Retrieval: the user's words in, the passages of their documents most likely to answer them out."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from deployments.component import Component


class RetrievalService(Component):
    kind = "retrieval"

    @abstractmethod
    def retrieve(self, query: str, params: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Return chunks, best first, each with `id`, `source`, `text` and `score`; and a profile."""
        raise NotImplementedError

    def process(self, inputs: dict[str, Any], params: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        chunks, profile = self.retrieve(inputs["transcript"], params)
        # The texts are already in the prompt the LLM stage records; ids and scores say where they came from.
        found = [{"id": c["id"], "source": c["source"], "score": c["score"]} for c in chunks]
        return {"context": chunks}, {"chunks": found, **profile}
