"""``lvmkit fit lda`` and the commands that use a topic model, in-process: text in (one document per
line, a folder of .txt files, or a table of counts), the vocabulary saved with the model, every
topic's top words in ``info``, documents' topic proportions from ``transform``, the perplexity
from ``score``, the top words from ``plot``, the ``report``; errors in one line with status 2."""

import json

import numpy as np
import pandas as pd
import pytest

import lvmkit
from lvmkit.data import read_documents
from tests.cli.conftest import one_error_line

# three topics with words of their own, and words of every topic
TOPICS = {
    "sport": "match goal team player coach league season stadium referee trophy".split(),
    "money": "bank market stock price investor profit share trader bond dividend".split(),
    "food": "recipe oven flour sugar butter garlic onion pepper kitchen dinner".split(),
}
FILLER = "the and of with from".split()  # English stop words: left out


def _documents(n=45, length=24, seed=0) -> list[str]:
    """Documents mostly of one topic's words (a fifth from another topic), with stop words."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    out = []
    for i in range(n):
        main, other = TOPICS[names[i % 3]], TOPICS[names[(i + 1) % 3]]
        words = [str(rng.choice(main if rng.random() < 0.8 else other)) for _ in range(length)] + [
            str(rng.choice(FILLER)) for _ in range(4)
        ]
        rng.shuffle(words)
        out.append(" ".join(words).capitalize() + ".")
    return out


def _topic_of(words) -> str | None:
    """The topic whose words are at least 8 of these 10, else None."""
    for name, vocabulary in TOPICS.items():
        if sum(w in vocabulary for w in words) >= 8:
            return name
    return None


@pytest.fixture
def cli(tmp_path, run_cli):
    run = run_cli
    run.documents = _documents()
    (tmp_path / "docs.txt").write_text("\n".join(run.documents) + "\n")
    return run


def _fit(cli, *extra):
    return cli(
        "fit", "lda", "docs.txt", "--topics", "3", "--max-iter", "20", "-o", "lda.lvm", *extra
    )


def test_fit_info_transform_score(cli, tmp_path):
    out, _ = _fit(cli)
    assert out.startswith(
        "LatentDirichletAllocation fitted on 45 documents, a vocabulary of 30 words, 3 topics, "
        "20 iterations (batch), training perplexity "
    )
    assert out.endswith("saved lda.lvm\n")
    model = lvmkit.load("lda.lvm")
    corpus = read_documents(tmp_path / "docs.txt")
    assert model.vocabulary_ == corpus.vocabulary and len(model.vocabulary_) == 30
    same = lvmkit.LatentDirichletAllocation(3, max_iter=20, random_state=0).fit(corpus.counts)
    np.testing.assert_allclose(model.components_, same.components_, rtol=1e-10)

    fit = json.loads(_fit(cli, "--json")[0])
    assert fit["class"] == "LatentDirichletAllocation" and fit["n_components"] == 3
    assert fit["n_samples"] == 45 and fit["n_features"] == 30
    assert fit["n_words"] == corpus.n_words and fit["perplexity"] == pytest.approx(same.bound_)
    assert fit["bound_per_word"] == pytest.approx(-np.log(same.bound_))

    out, _ = cli("info", "lda.lvm")
    lines = {line.split(":")[0].strip(): line.split(":", 1)[1].split() for line in out.splitlines()}
    found = [_topic_of(lines[f"topic {k}"]) for k in (1, 2, 3)]
    assert sorted(found) == sorted(TOPICS), out  # each topic is one of the three
    assert "vocabulary: 30 words" in out and "training perplexity:" in out
    info = json.loads(cli("info", "lda.lvm", "--json")[0])
    assert [t["topic"] for t in info["topics"]] == [1, 2, 3]
    for topic in info["topics"]:
        assert len(topic["words"]) == 10 and _topic_of(topic["words"]) is not None
        assert topic["probabilities"] == sorted(topic["probabilities"], reverse=True)
    assert info["summary"]["topic 1"] == " ".join(info["topics"][0]["words"])
    # the summary names a topic model's components and features for what they are
    assert info["summary"]["topics"] == "3" and info["summary"]["words (vocabulary)"] == "30"
    assert "components" not in info["summary"] and "features" not in info["summary"]

    out, _ = cli("transform", "lda.lvm", "docs.txt", "-o", "props.csv")
    assert out == "wrote the topic proportions of 45 documents (topic1 .. topic3) to props.csv\n"
    table = pd.read_csv(tmp_path / "props.csv")
    assert list(table.columns) == ["document", "topic1", "topic2", "topic3"]
    assert table["document"].tolist() == list(range(1, 46))  # line numbers
    proportions = table[["topic1", "topic2", "topic3"]].to_numpy()
    np.testing.assert_allclose(proportions.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(proportions, model.transform(corpus.counts), rtol=1e-12)
    # every document's main topic is its own
    main = proportions.argmax(1)
    assert all(len(set(main[j::3])) == 1 for j in range(3)) and len(set(main[:3])) == 3
    got = json.loads(cli("transform", "lda.lvm", "docs.txt", "--json")[0])
    assert got["n_documents"] == 45 and got["n_topics"] == 3
    assert got["documents"][:2] == ["1", "2"]
    np.testing.assert_allclose(got["proportions"], proportions, rtol=1e-12)

    out, _ = cli("score", "lda.lvm", "docs.txt")
    assert out.startswith(f"docs.txt: 45 documents, {corpus.n_words} words: perplexity ")
    assert "nats per word given the topics" in out and len(out.splitlines()) == 1
    scored = json.loads(cli("score", "lda.lvm", "docs.txt", "--json")[0])
    assert scored["perplexity_with_topics"] == pytest.approx(
        model.perplexity(corpus.counts), rel=1e-10
    )
    assert scored["perplexity"] == pytest.approx(np.exp(-scored["bound_per_word"]))
    assert 1.0 < scored["perplexity"] < scored["perplexity_with_topics"]
    cli("score", "lda.lvm", "docs.txt", "-o", "score.csv")
    row = pd.read_csv(tmp_path / "score.csv")
    assert row["perplexity"].item() == pytest.approx(scored["perplexity"], rel=1e-12)


def test_plot_and_report(cli, tmp_path):
    _fit(cli, "--max-iter", "5")
    out, _ = cli("plot", "lda.lvm", "docs.txt", "-o", "topics.png")
    assert out == "wrote topics.png\n"
    assert (tmp_path / "topics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out, _ = cli("report", "lda.lvm", "docs.txt", "-o", "report.html")
    assert out == "wrote report.html\n"
    page = (tmp_path / "report.html").read_text()
    for title in (
        "What the model learned",
        "The documents",
        "Training perplexity",
        "Top words",
        "Topics",
        "Documents&#x27; topic proportions",
    ):
        assert f"<h2>{title}</h2>" in page
    assert page.count("data:image/png;base64,") == 3
    model = lvmkit.load("lda.lvm")
    top = " ".join(model.vocabulary_[j] for j in np.argsort(-model.components_[0])[:10])
    assert top in page


def test_a_folder_of_txt_files_and_a_table_of_counts(cli, tmp_path):
    folder = tmp_path / "articles"
    folder.mkdir()
    for i, text in enumerate(cli.documents[:30]):
        (folder / f"doc{i:02d}.txt").write_text(text)
    cli("fit", "lda", "articles", "-k", "3", "--max-iter", "5", "--min-df", "1", "-o", "f.lvm")
    out, _ = cli("transform", "f.lvm", "articles")
    assert out.splitlines()[0] == "document,topic1,topic2,topic3"
    assert out.splitlines()[1].startswith("doc00.txt,")
    # a table of counts: documents as rows, its column names the words
    corpus = read_documents(tmp_path / "docs.txt")
    frame = pd.DataFrame(corpus.counts.toarray(), columns=corpus.vocabulary)
    frame.to_csv(tmp_path / "counts.csv", index=False)
    cli("fit", "lda", "counts.csv", "--topics", "3", "--max-iter", "20", "-o", "t.lvm")
    model = lvmkit.load("t.lvm")
    assert model.vocabulary_ == corpus.vocabulary
    out, _ = cli("info", "t.lvm")
    assert "topic 3: " in out and any(w in out for w in TOPICS["food"])
    out, _ = cli("transform", "t.lvm", "counts.csv")
    assert out.splitlines()[1].startswith("0,")  # rows by 0-based position
    # the table's model reads text on its vocabulary (the column names), and the other way
    out, _ = cli("score", "t.lvm", "docs.txt", "--json")
    assert json.loads(out)["n_documents"] == 45
    np.save(tmp_path / "counts.npy", corpus.counts.toarray())
    out, _ = cli("transform", "f.lvm", "counts.npy", "--json")
    assert np.shape(json.loads(out)["proportions"]) == (45, 3)


def test_new_documents_on_the_model_vocabulary(cli, tmp_path):
    _fit(cli, "--max-iter", "5")
    (tmp_path / "new.txt").write_text(
        "Zebras and giraffes\nThe coach and the team won the match\n\nFlour, sugar and butter\n"
    )
    out, err = cli("transform", "lda.lvm", "new.txt")
    assert err.startswith("warning: 1 of the 3 documents of new.txt have no word of the model's")
    assert "(line 1)" in err
    rows = out.splitlines()
    assert [r.split(",")[0] for r in rows] == ["document", "2", "4"]
    cli("score", "lda.lvm", "new.txt")


@pytest.mark.parametrize(
    "args, message",
    [
        (("fit", "lda", "nowhere.txt"), "nowhere.txt: no such file or folder. Give a folder"),
        (("fit", "lda", "blank.txt"), "blank.txt: no documents: the file holds only blank lines"),
        (("fit", "lda", "folder"), "folder: no documents: the folder holds no .txt file"),
        (
            ("fit", "lda", "one.txt"),
            "--min-df 2 and --max-df 0.95 each removed every word: a word must be in at least 2 "
            "and at most 0.95 of the 1 document(s). With so few documents use --min-df 1 and "
            "--max-df 1.0.",
        ),
        (("fit", "lda", "stops.txt", "--min-df", "1"), "every word is a stop word (--stop-words"),
        (("fit", "lda", "docs.txt", "--min-df", "0.5x"), "'0.5x' is not a document frequency"),
        (("fit", "lda", "docs.txt", "--max-df", "1.5"), "'1.5' is not a document frequency"),
        (("fit", "lda", "docs.txt", "--columns", "a"), "--columns applies to a table of counts"),
        (("fit", "lda", "docs.txt", "--scale", "2"), "--scale applies to a table of counts"),
        (("fit", "lda", "latin.txt"), "latin.txt: not utf-8 text: byte 0xe9 at position 3"),
        (("fit", "lda", "docs.txt", "--method", "em"), "'em' is not one of 'batch', 'online'"),
    ],
)
def test_fit_errors(cli, tmp_path, args, message):
    (tmp_path / "blank.txt").write_text("\n \n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "one.txt").write_text("just one document here\n")
    (tmp_path / "stops.txt").write_text("the and of\nit is a\n")
    (tmp_path / "latin.txt").write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    line = one_error_line(cli(*args, code=2)[1])
    assert message in line, line
    assert not (tmp_path / "model.lvm").exists()


def test_latin1_text_with_encoding(cli, tmp_path):
    (tmp_path / "latin.txt").write_bytes("café crème thé\nthé café lait\n".encode("latin-1"))
    out, _ = cli(
        "fit", "lda", "latin.txt", "-k", "2", "--max-iter", "2", "--encoding", "latin-1",
        "--min-df", "1", "--max-df", "1.0", "--stop-words", "none", "-o", "l.lvm",
    )  # fmt: skip
    assert lvmkit.load("l.lvm").vocabulary_ == ["café", "crème", "lait", "thé"]
    out, _ = cli("transform", "l.lvm", "latin.txt")  # read with the model's encoding
    assert len(out.splitlines()) == 3
    line = one_error_line(cli("score", "l.lvm", "latin.txt", "--encoding", "utf-8", code=2)[1])
    assert "not utf-8 text" in line and "Give the file's encoding, e.g. --encoding latin-1" in line
    (tmp_path / "utf8.txt").write_text("thé café\n", encoding="utf-8")
    out, _ = cli("transform", "l.lvm", "utf8.txt", "--encoding", "utf-8")
    assert out.splitlines()[1].startswith("1,")


def test_errors_of_the_commands_that_use_a_topic_model(cli, tmp_path):
    _fit(cli, "--max-iter", "2")
    (tmp_path / "unknown.txt").write_text("zebra giraffe\nlion tiger\n")
    for args, message in [
        (("transform", "lda.lvm", "unknown.txt"), "none of its 2 document(s) has a word of the"),
        (("transform", "lda.lvm", "docs.txt", "--columns", "a"), "--columns applies to a table"),
        (("transform", "lda.lvm", "missing.txt"), "missing.txt: no such file or folder"),
        (("score", "lda.lvm", "docs.txt", "--k", "10"), "--k (importance sampling) is for"),
        (("sample", "lda.lvm"), "a LatentDirichletAllocation does not draw samples"),
        (("predict", "lda.lvm", "docs.txt"), "has no components to predict; 'lvmkit transform"),
        (("impute", "lda.lvm", "docs.txt"), "cannot impute missing values"),
        (("plot", "lda.lvm", "docs.txt", "--dims", "0,1", "-o", "p.png"), "--dims does not apply"),
        (("score", "lda.lvm", "docs.txt", "--lengths-column", "x"), "--lengths-column is for"),
    ]:
        line = one_error_line(cli(*args, code=2)[1])
        assert message in line, (args, line)
    # a model fitted in Python without its vocabulary reads tables of counts, not text
    corpus = read_documents(tmp_path / "docs.txt")
    lvmkit.LatentDirichletAllocation(3, max_iter=2).fit(corpus.counts).save(tmp_path / "bare.lvm")
    line = one_error_line(cli("transform", "bare.lvm", "docs.txt", code=2)[1])
    assert "bare.lvm: the model has no vocabulary (vocabulary_)" in line
    np.save(tmp_path / "counts.npy", corpus.counts.toarray())
    out, _ = cli("transform", "bare.lvm", "counts.npy")
    assert len(out.splitlines()) == 46
    out, _ = cli("info", "bare.lvm")
    assert "no vocabulary_ saved" in out and "topic 1: x" in out
