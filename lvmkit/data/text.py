"""Text in, word counts out: a corpus read into the document-term matrix a topic model fits.

``read_documents(path)`` reads

- a folder of ``.txt`` files, one document per file, in the order of their names (names beginning
  with a dot are left out; sub-folders are not read), or
- a text file with one document per line (blank lines skipped; ``.gz`` files are decompressed),

and counts every document's words with scikit-learn's ``CountVectorizer`` (its token pattern:
runs of two or more letters, digits or underscores; lower-cased by default), dropping stop words
and the words that are in too few (``min_df``) or too many (``max_df``) documents. It returns a
:class:`Corpus`: the counts (SciPy CSR, documents as rows), the vocabulary (the words of the
columns, in order) and the documents' names (the file names, or the line numbers counted from 1
with blank lines included, so that a name points at its line in the file).

Given the ``vocabulary`` of a fitted model, the documents are counted on those words (in that
order) and no filter applies: the counts of new documents for ``transform``, ``score`` and
``perplexity``. Words outside the vocabulary are not counted::

    corpus = read_documents("articles/")                      # fit
    lda = lvmkit.LatentDirichletAllocation(20).fit(corpus.counts)
    lda.vocabulary_ = corpus.vocabulary                        # saved with the model
    new = read_documents("new.txt", vocabulary=lda.vocabulary_)
    proportions = lda.transform(new.drop_empty().counts)

A document may end up with no word (only stop words, or no word of the vocabulary);
:meth:`Corpus.empty_documents` names those and :meth:`Corpus.drop_empty` leaves them out (a topic
model cannot infer the topics of an empty document).
"""

from __future__ import annotations

import gzip
import math
from collections import Counter
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["Corpus", "read_documents"]


@dataclass
class Corpus:
    """Documents as word counts.

    counts : SciPy CSR matrix (n_documents, n_words) of int64 counts
    vocabulary : the word of every column, in order
    names : every document's name (its file name, or its line number in the file)
    source : the path read
    """

    counts: sp.csr_matrix
    vocabulary: list[str]
    names: list[str]
    source: str = ""
    settings: dict = field(default_factory=dict, repr=False)

    @property
    def n_documents(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_words(self) -> int:
        """The number of words counted in all documents (tokens, not distinct words)."""
        return int(self.counts.sum())

    def __len__(self) -> int:
        return self.n_documents

    def empty_documents(self) -> list[str]:
        """The names of the documents with no word counted."""
        lengths = np.asarray(self.counts.sum(axis=1)).ravel()
        return [self.names[i] for i in np.flatnonzero(lengths == 0)]

    def drop_empty(self) -> Corpus:
        """The corpus without its empty documents (the same object when there are none)."""
        lengths = np.asarray(self.counts.sum(axis=1)).ravel()
        keep = np.flatnonzero(lengths > 0)
        if len(keep) == self.n_documents:
            return self
        return Corpus(
            self.counts[keep],
            self.vocabulary,
            [self.names[i] for i in keep],
            self.source,
            self.settings,
        )


def read_documents(
    path,
    *,
    stop_words="english",
    min_df=2,
    max_df=0.95,
    max_features=None,
    lowercase=True,
    encoding="utf-8",
    vocabulary=None,
) -> Corpus:
    """Read a folder of ``.txt`` files (one document each, by file name) or a text file with one
    document per line (blank lines skipped) into a :class:`Corpus` of word counts.

    Parameters
    ----------
    path : str or Path
    stop_words : 'english', None or a list of words
        Words left out: scikit-learn's English list, none, or yours.
    min_df, max_df : int or float
        Keep the words in at least ``min_df`` and at most ``max_df`` documents: an int is a
        number of documents, a float in [0, 1] a share of them (scikit-learn's meaning).
    max_features : int, optional
        Keep only the most frequent words (counted over the whole corpus), after the filters.
    lowercase : bool
        Lower-case the text before counting.
    encoding : str
        The files' text encoding.
    vocabulary : list of str, optional
        Count on these words (a fitted model's ``vocabulary_``), in this order; the filters
        (``stop_words``, ``min_df``, ``max_df``, ``max_features``) then do not apply.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    path = Path(path)
    _check_settings(stop_words, min_df, max_df, max_features)
    texts, names = _read_texts(path, encoding)
    settings = {
        "stop_words": stop_words,
        "min_df": min_df,
        "max_df": max_df,
        "max_features": max_features,
        "lowercase": bool(lowercase),
        "encoding": encoding,
    }
    if vocabulary is not None:
        words = _vocabulary(vocabulary)
        vectorizer = CountVectorizer(vocabulary=words, lowercase=lowercase, dtype=np.int64)
        counts = vectorizer.transform(texts)
        return Corpus(sp.csr_matrix(counts), words, names, str(path), settings)
    vectorizer = CountVectorizer(
        stop_words=stop_words,
        min_df=min_df,
        max_df=max_df,
        max_features=max_features,
        lowercase=lowercase,
        dtype=np.int64,
    )
    try:
        counts = vectorizer.fit_transform(texts)
    except ValueError as exc:
        text = str(exc)
        if "empty vocabulary" in text or "no terms remain" in text or "max_df corresponds" in text:
            raise ValueError(_why_no_words(path, texts, vectorizer, settings)) from None
        raise
    words = [str(w) for w in vectorizer.get_feature_names_out()]
    return Corpus(sp.csr_matrix(counts), words, names, str(path), settings)


# ====================================================================== reading the text
def _read_texts(path: Path, encoding: str) -> tuple[list[str], list[str]]:
    """(documents, names) of a folder of .txt files or a file of one document per line."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file or folder. Give a folder of .txt files (one document each) "
            "or a text file with one document per line."
        )
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix.lower() == ".txt" and not p.name.startswith(".")
        )
        if not files:
            raise ValueError(
                f"{path}: no documents: the folder holds no .txt file ({_contents(path)}). Put "
                "one document per .txt file in it, or give a text file with one document per "
                "line."
            )
        return [_decode(p, encoding) for p in files], [p.name for p in files]
    text = _decode(path, encoding)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    documents, names = [], []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            documents.append(line)
            names.append(str(number))
    if not documents:
        raise ValueError(
            f"{path}: no documents: the file "
            + ("is empty" if not text else "holds only blank lines")
            + ". Give a text file with one document per line, or a folder of .txt files."
        )
    return documents, names


def _decode(path: Path, encoding: str) -> str:
    raw = path.read_bytes()
    if path.suffix.lower() == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(
                f"{path}: not a readable gzip file ({exc}). Decompress it yourself, or give the "
                "plain text file."
            ) from None
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise ValueError(
            f"encoding={encoding!r} is not a text encoding Python knows; try encoding='utf-8' "
            "or encoding='latin-1'."
        ) from None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ValueError(
            f"{path}: not {encoding} text: byte 0x{raw[exc.start]:02x} at position {exc.start} "
            f"(line {line}) cannot be decoded. Give the file's encoding, e.g. "
            "encoding='latin-1' (or cp1252), or convert the file to UTF-8."
        ) from None
    return text.removeprefix("\ufeff")  # a byte-order mark is not a word


def _contents(folder: Path) -> str:
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return "it is empty"
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    return f"it holds {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}: {shown}"


# ====================================================================== checks and diagnoses
def _check_settings(stop_words, min_df, max_df, max_features) -> None:
    if isinstance(stop_words, str) and stop_words != "english":
        raise ValueError(
            f"stop_words={stop_words!r}: give 'english' (scikit-learn's list), None (keep every "
            "word) or a list of words."
        )
    for name, value, low in (("min_df", min_df, 0.0), ("max_df", max_df, 0.0)):
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ValueError(
                f"{name}={value!r}: give a number of documents (an int >= 1) or a share of them "
                "(a float in [0, 1])."
            )
        if isinstance(value, Integral) and value < 1:
            raise ValueError(
                f"{name}={value!r}: a number of documents must be >= 1; for a share give a float "
                "in [0, 1]."
            )
        if not isinstance(value, Integral) and not low <= value <= 1:
            raise ValueError(
                f"{name}={value!r}: a share of the documents is a float in [0, 1]; for a number of "
                "documents give an int."
            )
    if max_features is not None and (
        isinstance(max_features, bool) or not isinstance(max_features, Integral) or max_features < 1
    ):
        raise ValueError(
            f"max_features={max_features!r}: give the number of words to keep (an int >= 1), or "
            "None for all."
        )


def _vocabulary(vocabulary) -> list[str]:
    words = [str(w) for w in np.asarray(vocabulary, dtype=object).ravel().tolist()]
    if not words:
        raise ValueError("vocabulary is empty; give the fitted model's words (vocabulary_).")
    seen: set[str] = set()
    for word in words:
        if word in seen:
            raise ValueError(
                f"vocabulary holds {word!r} twice; a vocabulary names every column once."
            )
        seen.add(word)
    return words


def _why_no_words(path: Path, texts, vectorizer, settings: dict) -> str:
    """Which filter left the corpus without a word, and what to try."""
    from sklearn.feature_extraction.text import CountVectorizer

    n = len(texts)
    head = f"{path}: no word left to count in the {n} document{'s' if n != 1 else ''}: "
    analyze = CountVectorizer(lowercase=settings["lowercase"]).build_analyzer()
    frequency: Counter = Counter()
    for text in texts:
        frequency.update(set(analyze(text)))
    if not frequency:
        return head + (
            "they hold no word at all (a word is two or more letters, digits or underscores). "
            "Check that the path holds text."
        )
    stops = vectorizer.get_stop_words() or frozenset()
    frequency = Counter({w: c for w, c in frequency.items() if w not in stops})
    if not frequency:
        return head + (
            f"every word is a stop word (stop_words={settings['stop_words']!r}). Keep them with "
            "stop_words=None."
        )
    min_df, max_df = settings["min_df"], settings["max_df"]
    low = min_df if isinstance(min_df, Integral) else min_df * n
    high = max_df if isinstance(max_df, Integral) else max_df * n
    most, least = max(frequency.values()), min(frequency.values())
    by_min, by_max = most < low, least > high
    counted = (
        f" (an int max_df counts documents: max_df={max_df} is {max_df} document"
        f"{'s' if max_df != 1 else ''}; max_df=1.0 is all of them)"
        if isinstance(max_df, Integral)
        else ""
    )
    if by_min and by_max:
        return head + (
            f"min_df={min_df!r} and max_df={max_df!r} each removed every word: a word must be "
            f"in at least {low:g} and at most {high:g} of the {n} document(s). With so few "
            f"documents use min_df=1 and max_df=1.0{counted}."
        )
    if by_min:
        return head + (
            f"min_df={min_df!r} removed every word: none of the {len(frequency)} distinct words "
            f"is in {math.ceil(low)} or more of the {n} documents (the most common is in "
            f"{most}). Lower min_df (min_df=1 keeps them all)."
        )
    if by_max:
        return head + (
            f"max_df={max_df!r} removed every word: each of the {len(frequency)} distinct words "
            f"is in more than {high:g} of the {n} documents{counted}. Raise max_df (max_df=1.0 "
            "keeps them all)."
        )
    return head + (
        f"min_df={min_df!r} and max_df={max_df!r} together removed every word: no word is in "
        f"at least {low:g} and at most {high:g} of the {n} documents{counted}. Lower min_df or "
        "raise max_df."
    )
