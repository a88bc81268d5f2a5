"""Aspect-based sentiment (`msakit.extract.absa`): spans, polarities, evidence, each rule's knockout,
bad input, the missing-model path in `analyze`, and the labelled sets (realdata)."""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import pytest

pytest.importorskip("vaderSentiment")
spacy = pytest.importorskip("spacy")

from msakit.extract import absa as absa_module  # noqa: E402
from msakit.extract.absa import SPACY_MISSING, AbsaConfig, AspectSentiment, unavailable_reason  # noqa: E402

if not absa_module.spacy_available():
    pytest.skip(SPACY_MISSING, allow_module_level=True)

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def absa() -> AspectSentiment:
    return AspectSentiment()


def _by_term(absa: AspectSentiment, text: str) -> dict[str, tuple[str, float, str]]:
    found = absa(text)
    for a in found:
        assert text[a.start : a.end] == a.term  # the span is the term
        assert -1.0 <= a.score <= 1.0
        assert (a.polarity == "positive") == (a.score >= 0.05) and (a.polarity == "negative") == (a.score <= -0.05)
    return {a.term: (a.polarity, a.score, a.evidence) for a in found}


def test_aspects_spans_polarity_and_evidence(absa: AspectSentiment) -> None:
    got = _by_term(absa, "The battery life is not great, but the screen looks really beautiful.")
    assert set(got) == {"battery life", "screen"}  # compound noun kept, determiner dropped
    assert got["battery life"][0] == "negative" and got["battery life"][2] == "not great"
    assert got["screen"][0] == "positive" and got["screen"][2] == "really beautiful"
    got = _by_term(absa, "I loved the ending and the music was a little boring.")
    assert got["ending"][0] == "positive" and got["music"][0] == "negative"
    # unpunctuated lower-case speech, as MOSI transcripts are
    got = _by_term(absa, "i didnt really care for his character at all")
    assert got["character"][0] == "negative" and "care" in got["character"][2]


def test_rules(absa: AspectSentiment) -> None:
    assert set(_by_term(absa, "the acting and the story were great")) == {"acting", "story"}  # conj shares
    assert _by_term(absa, "the verdict is stupid and a complete waste of money")["verdict"][0] == "negative"
    assert _by_term(absa, "I'm a big Tom Hanks fan")["Tom Hanks"][0] == "positive"  # opinion noun's compound
    assert _by_term(absa, "he had no character development")["character development"][0] == "negative"
    # an event verb with an object is not an opinion about its subject; a wish is not praise
    assert _by_term(absa, "Marlon Wayans plays a watered down version of himself") == {}
    assert _by_term(absa, "I wish I didnt watch this movie") == {}
    # rules 7-9: "fan of X", a quantifier's noun, a relative clause's noun
    assert _by_term(absa, "if you are as big a fan of disney as i am")["disney"][0] == "positive"
    assert _by_term(absa, "I just did not care about all of these men")["men"][0] == "negative"
    assert _by_term(absa, "the plot, which was boring, dragged on")["plot"][0] == "negative"
    assert _by_term(absa, "the movie I loved was long")["movie"][0] == "positive"
    # a negation the parse attaches to the verb, out of the few-token window before the opinion word
    assert _by_term(absa, "The battery life is not, in my honest opinion, great.")["battery life"][0] == "negative"
    # what is wasted is not what is judged
    assert set(_by_term(absa, "do not waste your money on this DVD")) == {"DVD"}


@pytest.mark.parametrize(
    ("config", "text", "term", "check"),
    [
        # negation handling: without it "not great" reads as praise
        (AbsaConfig(negation=False), "The battery life is not great.", "battery life", "flips"),
        # boosters: "really" makes the opinion stronger
        (AbsaConfig(boosters=False), "The screen looks really beautiful.", "screen", "weaker"),
        # the noun valence bound: "verdict" (0.6 in VADER) stays an aspect only under 1.0
        (AbsaConfig(min_noun_valence=0.5), "the verdict is stupid", "verdict", "gone"),
    ],
)
def test_knockouts_change_the_result(
    absa: AspectSentiment, config: AbsaConfig, text: str, term: str, check: str
) -> None:
    full = _by_term(absa, text)
    broken = _by_term(AspectSentiment(config), text)
    assert term in full
    if check == "flips":
        assert full[term][0] == "negative" and broken[term][0] == "positive"
    elif check == "weaker":
        assert abs(broken[term][1]) < abs(full[term][1])
    else:
        assert term not in broken


@pytest.mark.parametrize(
    ("method", "text", "term"),
    [
        ("_intransitive", "the movie sucks", "movie"),  # rule 3, an opinion verb of another subject
        ("_verb_targets", "I really loved the soundtrack", "soundtrack"),  # rule 3, the speaker's verb
    ],
)
def test_verb_rule_knockouts(absa: AspectSentiment, method: str, text: str, term: str) -> None:
    assert term in _by_term(absa, text)
    with mock.patch.object(AspectSentiment, method, lambda self, *a, **k: []):
        assert term not in _by_term(absa, text)


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("I just did not care about all of these men", "men"),  # rule 8
        ("the plot, which was boring, dragged on", "plot"),  # rule 9
    ],
)
def test_pronoun_resolution_knockout(absa: AspectSentiment, text: str, term: str) -> None:
    with mock.patch.object(AspectSentiment, "_resolve", lambda self, tok: tok if self._is_aspect(tok) else None):
        assert term not in _by_term(absa, text)


def test_conj_knockout(absa: AspectSentiment) -> None:
    text = "the acting and the story were great"
    with mock.patch.object(AspectSentiment, "_conjuncts", lambda self, a: []):
        assert set(_by_term(absa, text)) == {"acting"}


def test_bad_input(absa: AspectSentiment) -> None:
    assert absa("") == [] and absa("   \n") == [] and absa("...!!") == []
    assert absa.batch(["", "Great acting.", ""])[1][0].term == "acting"
    assert "reads only English" in unavailable_reason("es")
    assert unavailable_reason("en") == "" and unavailable_reason(None) == ""


def test_analyze_without_the_spacy_model_goes_on(tmp_path: Path) -> None:
    """A missing spaCy model is one note and no aspects; the timeline is still written."""
    pytest.importorskip("av")
    sys.path.insert(0, str(Path(__file__).parent))
    from media_factory import write_video
    from msakit.analyze import Analyzer, write_outputs
    from test_analyze import _text_checkpoint

    video = write_video(tmp_path / "v.mp4", seconds=2.0)
    transcript = tmp_path / "t.csv"
    transcript.write_text("start,end,text\n0.0,1.0,the acting was great\n1.0,2.0,and then we left\n")
    analyzer = Analyzer(_text_checkpoint(tmp_path / "c"), scenes=False)
    with mock.patch.object(absa_module, "spacy_available", lambda model="": False):
        analysis = analyzer.analyze(video, transcript, language="en")
    assert SPACY_MISSING in analysis.notes and all(u.aspects == [] for u in analysis.utterances)
    analysis = analyzer.analyze(video, transcript, language="en")
    assert [a.term for a in analysis.utterances[0].aspects] == ["acting"] and analysis.utterances[1].aspects == []
    paths = write_outputs(analysis, tmp_path / "out")
    assert "acting=positive(+0." in paths["csv"].read_text()
    spanish = analyzer.analyze(video, transcript, language="es")
    assert any("language 'es': no aspects" in n for n in spanish.notes)


@pytest.mark.realdata
def test_labelled_sets(shared_data: Path) -> None:
    """The numbers docs/pipeline.md reports: polarity beats the majority class on both sets, and the
    attachment rules are more precise than taking every noun."""
    sys.path.insert(0, str(BENCH))
    import absa_eval

    absa, plain = AspectSentiment(), AspectSentiment(AbsaConfig(negation=False))
    for name, path in absa_eval.SETS.items():
        result = absa_eval.evaluate(absa, plain, absa_eval.load_gold(path, shared_data))
        full, nouns = result["methods"]["msakit absa"], result["methods"]["all nouns"]
        assert full["polarity"]["accuracy"] > result["majority_polarity"], name
        assert full["overlap"]["precision"] > nouns["overlap"]["precision"], name
