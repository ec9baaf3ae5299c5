"""The text corpus of MEMIT's key statistics: WikiText-2 (data folder), a local file, or a `datasets` name.

Texts are paragraphs: non-empty lines that are not WikiText section headings (` = Title = `). The
first `count` of them, in file order, are used (deterministic; no shuffling).
"""
from __future__ import annotations

from pathlib import Path

from editbench.data import DataFile, resolve, sha256_of
from editbench.errors import EditbenchError

WIKITEXT2_VALID = DataFile(
    path="wikitext-2/valid.txt",
    sha256="f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    url="https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/valid.txt",
    license="CC BY-SA 3.0",
)

# Short names of `datasets` corpora: (dataset, configuration, split).
DATASET_ALIASES = {
    "wikitext-103": ("Salesforce/wikitext", "wikitext-103-raw-v1", "train"),
    "wikipedia": ("wikimedia/wikipedia", "20231101.en", "train"),
}


def paragraphs(lines) -> list[str]:
    """Non-empty lines that are not ` = Heading = ` lines, stripped."""
    kept = []
    for line in lines:
        line = line.strip()
        if line and not (line.startswith("=") and line.endswith("=")):
            kept.append(line)
    return kept


def load_texts(corpus: str, count: int, data_dir: str | Path | None = None) -> tuple[list[str], dict]:
    """The first `count` texts of `corpus` and its provenance (name, source, sha256 when a file)."""
    if count < 1:
        raise EditbenchError(f"stats_samples must be positive, got {count}")
    local = Path(corpus).expanduser()
    if corpus == "wikitext-2" or local.is_file():
        path = resolve(WIKITEXT2_VALID, data_dir) if corpus == "wikitext-2" else local
        with open(path, encoding="utf-8") as f:
            texts = paragraphs(f)
        source = {"corpus": corpus, "file": str(path), "sha256": sha256_of(path)}
    elif corpus.startswith((".", "/", "~")):
        raise EditbenchError(f"statistics corpus {corpus!r} is not a file")
    else:
        texts, source = _dataset_texts(corpus, count)
    if not texts:
        raise EditbenchError(f"statistics corpus {corpus!r} holds no text")
    return texts[:count], {**source, "texts": min(count, len(texts))}


def _dataset_texts(corpus: str, count: int) -> tuple[list[str], dict]:
    """Texts of a `datasets` corpus given as an alias, `NAME` or `NAME:CONFIG`, streamed (train split)."""
    import datasets

    if corpus in DATASET_ALIASES:
        name, config, split = DATASET_ALIASES[corpus]
    else:
        name, _, config = corpus.partition(":")
        config, split = config or None, "train"
    try:
        stream = datasets.load_dataset(name, config, split=split, streaming=True)
    except Exception as exc:  # datasets raises many types for missing names, offline hubs, bad configs
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise EditbenchError(f"cannot load statistics corpus {corpus!r} with datasets ({first})") from None
    texts = []
    for record in stream:
        texts.extend(paragraphs(str(record.get("text", "")).splitlines()))
        if len(texts) >= count:
            break
    return texts, {"corpus": corpus, "dataset": name, "config": config, "split": split}
