"""Retrieval over a small real document set: chunking, (re-)ingest, the faiss_rag stage, the command.

The module shares one embedding model, the stage's own, since loading it is the slow part.
"""

import asyncio
import json
import os
import re
import subprocess
import sys

import pytest
import torch
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from deployments.retrieval.faiss_index import FaissRetrieval
from deployments.retrieval.index import (
    MANIFEST,
    MINILM,
    REPO_ROOT,
    IndexNotReady,
    chunk_text,
    embedding_model_dir,
    index_dir,
    ingest,
    open_index,
)

LIBRARY = """# Hollowmere Public Library

The Hollowmere Public Library opens at nine in the morning and closes at six in the evening from
Monday to Friday. On Saturdays the doors open at ten and close at two in the afternoon. The
library is closed on Sundays.

A membership card costs four pounds a year and lets you borrow up to eight books at a time.
Books are lent for three weeks and can be renewed twice, at the desk or by telephone.

The reading room on the first floor keeps the town's newspaper archive, every issue of the
Hollowmere Gazette since 1871, on microfilm. Staff help visitors find old articles, and copies
cost ten pence a page. The archive was moved here from the old town hall after the flood of 1953,
when the basement where it used to be kept filled with river water overnight. Most of the
damaged volumes were dried page by page by volunteers over the following winter.
"""

SOUP = """Lemon barley soup

Rinse 200 g of pearl barley and soften one chopped onion in olive oil. Add the barley and a litre
of vegetable stock, then simmer gently for forty minutes until the grains are tender. Stir in the
juice of two lemons and a handful of parsley just before serving.
"""

PUDDING = """Cardamom rice pudding

Warm a litre of milk with six crushed cardamom pods, stir in 100 g of short-grain rice and 60 g
of sugar, and bake in a low oven for two hours until creamy.
"""

TIMETABLE = """# Eastbridge to Kelvin Point

The first train leaves Eastbridge at 06:40 from platform 3, then one every 45 minutes until
22:10. The journey takes 52 minutes, stopping at Millbrook and Orrin Cross. Bicycles travel free
outside the morning peak.
"""

OBSERVATORY = [
    "The Starfall Observatory telescope has a mirror 2.4 metres wide.",
    "Visitors may look through it on clear Thursday nights.",
]

QUESTIONS = {
    "When can I borrow books at the weekend?": "library.md",
    "How long does the grain soup need to cook on the stove?": "recipes/soup.txt",
    "What time is the earliest rail departure towards Kelvin Point?": "timetable.md",
    "How big is the stargazing instrument?": "observatory.pdf",
}


def write_pdf(path, lines):
    """pypdf writes no text itself, but a page whose content stream shows Helvetica text is enough."""
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    font = DictionaryObject(
        {
            NameObject(key): NameObject(value)
            for key, value in [("/Type", "/Font"), ("/Subtype", "/Type1"), ("/BaseFont", "/Helvetica")]
        }
    )
    fonts = DictionaryObject({NameObject("/F1"): font})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
    shown = " ".join(f"({line}) '" for line in lines)
    content = DecodedStreamObject()
    content.set_data(f"BT /F1 12 Tf 72 720 Td 14 TL {shown} ET".encode())
    page.replace_contents(content)
    writer.write(path)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    # On a small shared machine torch's second thread mostly waits for a core: one is faster.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield FaissRetrieval(index="served", root=str(tmp_path_factory.mktemp("indexes")))
    torch.set_num_threads(threads)


@pytest.fixture
def embedder(service):
    return service.embedder


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    (folder / "recipes").mkdir(parents=True)
    (folder / "library.md").write_text(LIBRARY)
    (folder / "recipes" / "soup.txt").write_text(SOUP)
    (folder / "timetable.md").write_text(TIMETABLE)
    (folder / ".notes.md").write_text("hidden files are not documents")
    (folder / "photo.jpg").write_bytes(b"not a document either")
    write_pdf(folder / "observatory.pdf", OBSERVATORY)
    return folder


def top_sources(directory, embedder, question, k=3):
    return [chunk.source for chunk, _ in open_index(directory).search(embedder.encode([question]), k)]


def test_chunks_keep_paragraphs_whole_and_overlap_by_sentences():
    sentence = "Sentence {} of a paragraph says a few words."  # 44-45 characters
    first, second, long = (" ".join(sentence.format(i) for i in r) for r in (range(3), range(3, 6), range(6, 20)))
    chunks = chunk_text(f"{first}\n\n{second}\n\n{long}\n\n\nLast words.", max_chars=200, overlap_chars=60)

    assert all(len(c) <= 200 for c in chunks)
    assert chunks[0] == first, "a paragraph that does not fit beside the one before starts a new chunk"
    assert chunks[1] == f"{sentence.format(2)}\n\n{second}", "and stays whole"
    for before, after in zip(chunks, chunks[1:]):
        last_sentence = re.split(r"(?<=\.)\s+", before)[-1]
        assert after.startswith(last_sentence), "each chunk repeats the last sentence of the one before"
    text = "\n".join(chunks)
    assert all(sentence.format(i) in text for i in range(20)), "sentences are never cut"
    assert chunks[-1].endswith("\n\nLast words.")
    assert chunk_text("word " * 100, max_chars=50, overlap_chars=0) == ["word " * 9 + "word"] * 10
    assert chunk_text(" \n\n ") == []


def test_questions_in_other_words_find_the_right_document_first(docs, tmp_path, embedder):
    directory = tmp_path / "indexes" / "docs"
    report = ingest(docs, directory, embedder)

    assert sorted(report.added) == ["library.md", "observatory.pdf", "recipes/soup.txt", "timetable.md"]
    assert report.added["library.md"] >= 2, "the library page is longer than one chunk"
    assert report.chunks == sum(report.added.values()) and report.files == 4
    for question, source in QUESTIONS.items():
        assert top_sources(directory, embedder, question)[0] == source, question


def test_reingest_with_nothing_changed_skips_every_file_and_leaves_the_index_alone(docs, tmp_path, embedder):
    directory = tmp_path / "indexes" / "docs"
    first = ingest(docs, directory, embedder)
    manifest_mtime = (directory / MANIFEST).stat().st_mtime_ns

    again = ingest(docs, directory, embedder)
    assert again.skipped == first.added
    assert not (again.added or again.updated or again.removed or again.failed)
    assert again.generation == first.generation
    assert (directory / MANIFEST).stat().st_mtime_ns == manifest_mtime, "serving replicas need not reload"


def test_a_changed_file_alone_is_embedded_again_and_its_old_text_is_gone(docs, tmp_path, embedder):
    directory = tmp_path / "indexes" / "docs"
    first = ingest(docs, directory, embedder)
    (docs / "recipes" / "soup.txt").write_text(PUDDING)

    report = ingest(docs, directory, embedder)
    assert report.updated == {"recipes/soup.txt": 1}
    assert sorted(report.skipped) == ["library.md", "observatory.pdf", "timetable.md"]
    index = open_index(directory)
    assert not any("barley" in c.text for c in index.chunks.values())
    assert index.vectors.ntotal == len(index.chunks) == first.chunks
    dessert = top_sources(directory, embedder, "What dessert goes in the oven for a long time?")
    assert dessert[0] == "recipes/soup.txt"
    assert sorted(p.name for p in directory.glob("*-*")) == [
        "chunks-000001.json",
        "chunks-000002.json",
        "index-000001.faiss",
        "index-000002.faiss",
    ], "the generation before stays for readers of the previous manifest"


def test_a_deleted_file_loses_its_chunks(docs, tmp_path, embedder):
    directory = tmp_path / "indexes" / "docs"
    first = ingest(docs, directory, embedder)
    (docs / "timetable.md").unlink()

    report = ingest(docs, directory, embedder)
    assert report.removed == {"timetable.md": first.added["timetable.md"]}
    index = open_index(directory)
    assert "timetable.md" not in index.files
    assert {c.source for c in index.chunks.values()} == {"library.md", "observatory.pdf", "recipes/soup.txt"}
    assert index.vectors.ntotal == len(index.chunks)
    assert "timetable.md" not in top_sources(directory, embedder, "trains to Kelvin Point", k=10)


def test_an_unreadable_pdf_is_reported_and_the_rest_indexed(docs, tmp_path, embedder):
    (docs / "scan.pdf").write_bytes(b"%PDF-1.4 truncated")
    report = ingest(docs, tmp_path / "indexes" / "docs", embedder)
    assert list(report.failed) == ["scan.pdf"]
    assert len(report.added) == 4


def test_a_missing_or_empty_index_says_how_to_build_it(tmp_path, embedder):
    directory = tmp_path / "indexes" / "notes"
    command = r"python -m deployments.retrieval.index ingest FOLDER --index notes --root "
    with pytest.raises(IndexNotReady, match=r"index 'notes' does not exist .*" + command):
        open_index(directory)
    (tmp_path / "empty").mkdir()
    ingest(tmp_path / "empty", directory, embedder)
    with pytest.raises(IndexNotReady, match=r"index 'notes' .* holds no text.*ingest FOLDER --index notes"):
        open_index(directory)


def test_the_stage_retrieves_context_and_follows_a_reingest(service, docs):
    question = {"transcript": "How long does the grain soup need to cook on the stove?"}
    with pytest.raises(IndexNotReady, match=r"index 'served' does not exist.*ingest FOLDER --index served"):
        asyncio.run(service.run(question, {}))

    ingest(docs, service.directory, service.embedder)
    out = asyncio.run(service.run(question, {"top_k": 2}))
    context = out.outputs["context"]
    assert [c["source"] for c in context][0] == "recipes/soup.txt" and len(context) == 2
    assert "forty minutes" in context[0]["text"]
    assert context[0]["score"] > context[1]["score"]
    assert out.result_profile["chunks"] == [{k: c[k] for k in ("id", "source", "score")} for c in context]
    assert out.result_profile["index"] == "served"

    (docs / "recipes" / "soup.txt").write_text(PUDDING)
    ingest(docs, service.directory, service.embedder)
    dessert = {"transcript": "How long does the rice dessert bake?"}
    out = asyncio.run(service.run(dessert, {"top_k": 5, "min_score": 0.3}))
    [pudding] = out.outputs["context"]  # the other four chunks score below 0.3
    assert pudding["source"] == "recipes/soup.txt" and pudding["text"].startswith("Cardamom rice pudding")
    assert out.result_profile["generation"] == 2, "the re-ingest was picked up"


def test_an_index_answers_only_the_model_that_embedded_it(docs, tmp_path, embedder):
    ingest(docs, tmp_path / "indexes" / "docs", embedder)
    model_dir = embedding_model_dir(MINILM)
    other = FaissRetrieval(index="docs", root=str(tmp_path / "indexes"), embedding_model=model_dir)
    question = {"transcript": "When can I borrow books at the weekend?"}
    mismatch = re.escape(f"built with '{MINILM}' but this stage embeds with '{model_dir}'; re-ingest")
    with pytest.raises(ValueError, match=mismatch):
        asyncio.run(other.run(question, {}))

    report = ingest(docs, tmp_path / "indexes" / "docs", other.embedder)
    assert report.rebuilt and len(report.added) == 4 and not report.skipped
    assert asyncio.run(other.run(question, {})).outputs["context"][0]["source"] == "library.md"


def test_index_names_cannot_leave_the_root():
    with pytest.raises(ValueError, match="index name"):
        index_dir("../elsewhere")
    assert index_dir("default") == REPO_ROOT / "data" / "indexes" / "default"


def test_the_command_ingests_and_searches(docs, tmp_path, embedder):
    root = tmp_path / "indexes"
    ingest(docs, root / "docs", embedder)
    (docs / "timetable.md").unlink()
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}

    def command(*args):
        argv = [sys.executable, "-m", "deployments.retrieval.index", *args, "--index", "docs", "--root", str(root)]
        return subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)

    ingested = command("ingest", str(docs))
    assert ingested.returncode == 0, ingested.stderr
    assert "removed" in ingested.stdout and "timetable.md" in ingested.stdout
    assert "skipped" in ingested.stdout and "library.md" in ingested.stdout
    assert json.loads((root / "docs" / MANIFEST).read_text())["files"] == 3

    found = command("search", "When can I borrow books at the weekend?", "-k", "2")
    assert found.returncode == 0, found.stderr
    lines = [line for line in found.stdout.splitlines() if ".md" in line or ".txt" in line or ".pdf" in line]
    assert "library.md" in lines[0] and len(lines) == 2
    assert re.search(r"\s0\.\d{3}\s", lines[0]), "the score"
