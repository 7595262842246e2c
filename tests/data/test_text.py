"""``lvmkit.data.read_documents``: a folder of .txt files or one document per line into word counts
(scikit-learn's CountVectorizer, its counts to the last one), the filters, counting new documents
on a fitted vocabulary, and the errors, each naming what was wrong and what to try."""

import gzip

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer

from lvmkit.data import Corpus, read_documents

DOCUMENTS = [
    "The cat sat on the mat with another cat.",
    "Dogs and cats play in the garden; the dog runs.",
    "A cat and a dog share the garden mat.",
    "Stock markets fell as the bank raised rates.",
    "The bank said markets and rates will rise again.",
]


@pytest.fixture
def lines_file(tmp_path):
    path = tmp_path / "docs.txt"
    # blank lines (one of spaces only) are skipped but counted in the line numbers
    path.write_text(
        DOCUMENTS[0] + "\n\n" + "\n".join(DOCUMENTS[1:3]) + "\n   \n" + "\n".join(DOCUMENTS[3:]),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "docs"
    path.mkdir()
    for name, text in zip(["e.txt", "b.txt", "a.txt", "d.txt", "c.txt"], DOCUMENTS, strict=True):
        (path / name).write_text(text, encoding="utf-8")
    (path / "notes.md").write_text("not a document")
    (path / ".hidden.txt").write_text("not a document either")
    (path / "sub").mkdir()
    (path / "sub" / "x.txt").write_text("sub-folders are not read")
    return path


def test_lines_are_documents_named_by_line_number(lines_file):
    corpus = read_documents(lines_file, min_df=1, max_df=1.0)
    assert isinstance(corpus, Corpus) and sp.isspmatrix_csr(corpus.counts)
    assert corpus.names == ["1", "3", "4", "6", "7"]
    reference = CountVectorizer(stop_words="english")
    expected = reference.fit_transform(DOCUMENTS)
    assert corpus.vocabulary == reference.get_feature_names_out().tolist()
    np.testing.assert_array_equal(corpus.counts.toarray(), expected.toarray())
    assert corpus.counts.dtype == np.int64
    assert corpus.n_documents == len(corpus) == 5
    assert corpus.n_words == expected.sum()
    assert corpus.source == str(lines_file)


def test_a_folder_is_one_document_per_txt_file_by_name(folder):
    corpus = read_documents(folder, min_df=1, max_df=1.0)
    assert corpus.names == ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"]
    by_name = dict(zip(["e.txt", "b.txt", "a.txt", "d.txt", "c.txt"], DOCUMENTS, strict=True))
    expected = CountVectorizer(stop_words="english").fit_transform(
        [by_name[n] for n in corpus.names]
    )
    np.testing.assert_array_equal(corpus.counts.toarray(), expected.toarray())
    assert "document" not in corpus.vocabulary and "read" not in corpus.vocabulary


def test_line_ends_byte_order_mark_and_gzip(tmp_path):
    text = "\ufeffalpha beta\r\ngamma alpha\r\rbeta gamma\n"
    plain = tmp_path / "crlf.txt"
    plain.write_bytes(text.encode("utf-8"))
    packed = tmp_path / "crlf.txt.gz"
    packed.write_bytes(gzip.compress(text.encode("utf-8")))
    for path in (plain, packed):
        corpus = read_documents(path, min_df=1, max_df=1.0)
        assert corpus.names == ["1", "2", "4"]
        assert corpus.vocabulary == ["alpha", "beta", "gamma"]  # no byte-order mark in a word
        np.testing.assert_array_equal(corpus.counts.toarray(), [[1, 1, 0], [1, 0, 1], [0, 1, 1]])


def test_filters(lines_file):
    every = read_documents(lines_file, stop_words=None, min_df=1, max_df=1.0)
    assert {"the", "and", "on"} <= set(every.vocabulary)
    english = read_documents(lines_file, min_df=1, max_df=1.0)
    assert "the" not in english.vocabulary and "cat" in english.vocabulary
    mine = read_documents(lines_file, stop_words=["cat", "dog"], min_df=1, max_df=1.0)
    assert "cat" not in mine.vocabulary and "the" in mine.vocabulary
    # min_df: in at least 2 documents (an int), or a share of them (a float)
    twice = read_documents(lines_file, min_df=2, max_df=1.0)
    assert twice.vocabulary == ["bank", "cat", "dog", "garden", "markets", "mat", "rates"]
    assert read_documents(lines_file, min_df=0.4, max_df=1.0).vocabulary == twice.vocabulary
    # max_df: "the" is in all 5 documents, "and" in 3
    common = read_documents(lines_file, stop_words=None, min_df=1, max_df=0.5)
    assert "the" not in common.vocabulary and "and" not in common.vocabulary
    assert "cat" in common.vocabulary
    assert "and" in read_documents(lines_file, stop_words=None, min_df=1, max_df=3).vocabulary
    top = read_documents(lines_file, min_df=1, max_df=1.0, max_features=3)
    assert len(top.vocabulary) == 3 and "cat" in top.vocabulary
    cased = read_documents(lines_file, stop_words=None, min_df=1, max_df=1.0, lowercase=False)
    assert "The" in cased.vocabulary and "the" in cased.vocabulary


def test_default_filters_on_a_small_corpus(lines_file):
    corpus = read_documents(lines_file)  # english stop words, min_df=2, max_df=0.95
    assert corpus.vocabulary == ["bank", "cat", "dog", "garden", "markets", "mat", "rates"]


def test_counting_new_documents_on_a_vocabulary(lines_file, tmp_path):
    vocabulary = ["rates", "cat", "zebra", "garden"]  # its order, words never seen included
    corpus = read_documents(lines_file, vocabulary=vocabulary, min_df=5, stop_words=None)
    assert corpus.vocabulary == vocabulary  # the filters do not apply
    np.testing.assert_array_equal(
        corpus.counts.toarray(),
        [[0, 2, 0, 0], [0, 0, 0, 1], [0, 1, 0, 1], [1, 0, 0, 0], [1, 0, 0, 0]],
    )
    new = tmp_path / "new.txt"
    new.write_text("CATS and zebras\nA zebra in the garden\n")
    counted = read_documents(new, vocabulary=np.array(vocabulary, dtype=object))
    np.testing.assert_array_equal(counted.counts.toarray(), [[0, 0, 0, 0], [0, 0, 1, 1]])
    assert counted.empty_documents() == ["1"]
    kept = counted.drop_empty()
    assert kept.names == ["2"] and kept.counts.shape == (1, 4)
    assert corpus.drop_empty() is corpus


def test_encoding(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("café crème\nthé café\n".encode("latin-1"))
    with pytest.raises(ValueError) as info:
        read_documents(path, min_df=1, max_df=1.0)
    message = str(info.value)
    assert str(path) in message and "not utf-8 text" in message and "line 1" in message
    assert "encoding='latin-1'" in message
    corpus = read_documents(path, min_df=1, max_df=1.0, encoding="latin-1")
    assert corpus.vocabulary == ["café", "crème", "thé"]
    with pytest.raises(ValueError, match="encoding='klingon' is not a text encoding"):
        read_documents(path, encoding="klingon")


def test_missing_path_and_no_documents(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.txt: no such file or folder. Give"):
        read_documents(tmp_path / "nowhere.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no documents: the folder holds no .txt file .it is emp"):
        read_documents(empty)
    (empty / "a.md").write_text("x")
    with pytest.raises(ValueError, match="holds 1 entry: a.md"):
        read_documents(empty)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\n")
    with pytest.raises(ValueError, match="blank.txt: no documents: the file holds only blank"):
        read_documents(blank)
    nothing = tmp_path / "nothing.txt"
    nothing.write_text("")
    with pytest.raises(ValueError, match="the file is empty"):
        read_documents(nothing)


def test_empty_vocabulary_names_the_filter(lines_file, tmp_path):
    with pytest.raises(ValueError, match="min_df=4 removed every word: none of the .* is in 4 or"):
        read_documents(lines_file, min_df=4)
    with pytest.raises(ValueError, match=r"max_df=0.1 removed every word.*max_df=1.0 keeps"):
        read_documents(lines_file, min_df=1, max_df=0.1)
    with pytest.raises(ValueError, match=r"an int max_df counts documents: max_df=1 is 1 doc"):
        read_documents(lines_file, min_df=2, max_df=1)
    stops = tmp_path / "stops.txt"
    stops.write_text("the and of\nit is a\n")
    with pytest.raises(ValueError, match=r"every word is a stop word .stop_words='english'"):
        read_documents(stops, min_df=1)
    symbols = tmp_path / "symbols.txt"
    symbols.write_text("! ? ;\n- + =\n")
    with pytest.raises(ValueError, match="they hold no word at all"):
        read_documents(symbols, min_df=1)
    one = tmp_path / "one.txt"
    one.write_text("a single document of words\n")
    with pytest.raises(ValueError, match=r"each removed every word.*use min_df=1 and max_df=1.0"):
        read_documents(one)
    assert read_documents(one, min_df=1, max_df=1.0).vocabulary == ["document", "single", "words"]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"stop_words": "french"}, "stop_words='french': give 'english'"),
        ({"min_df": 0}, "min_df=0: a number of documents must be >= 1"),
        ({"max_df": 1.5}, r"max_df=1.5: a share of the documents is a float in \[0, 1\]"),
        ({"min_df": "2"}, "min_df='2': give a number of documents"),
        ({"max_features": 0}, "max_features=0: give the number of words"),
        ({"vocabulary": []}, "vocabulary is empty"),
        ({"vocabulary": ["cat", "dog", "cat"]}, "vocabulary holds 'cat' twice"),
    ],
)
def test_bad_settings(lines_file, settings, message):
    with pytest.raises(ValueError, match=message):
        read_documents(lines_file, **settings)
