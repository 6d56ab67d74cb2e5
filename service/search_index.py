"""The trigram search index: which products contain a needle, without scanning the whole catalog.

Plain Python over the products' searchable texts (`searchable_text`: lower-cased, UTF-8, in one buffer);
the store decides when to build it. Where a catalog is deployed, the index is saved with it
(service/saved_catalog.py) and every server that starts on that file reads it instead of building it.
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from itertools import accumulate, chain, compress, count, islice
from operator import and_, not_

# Products a search checks between two chances for other calls to run: about half a millisecond.
SEARCH_STEP = 2000
_GRAM = 3
# Between a product's name and its description: a byte that no UTF-8 text contains, so no needle does and
# no match spans both fields.
_FIELD_SEPARATOR = b"\xff"


def searchable_text(name: str, description: str) -> bytes:
    """What a search looks for a needle in: the lower-cased name and description, UTF-8, kept apart.

    `to_needle(query) in searchable_text(name, description)` iff `query.lower() in name.lower() or
    query.lower() in description.lower()` (the seed's rule): a substring of valid UTF-8 bytes is a
    substring of its characters, and the separator keeps a match inside one field.
    """
    return name.lower().encode() + _FIELD_SEPARATOR + description.lower().encode()


def to_needle(query: str) -> bytes:
    """The lower-cased query as UTF-8 (a lone surrogate, which no product holds, matches nothing)."""
    return query.lower().encode("utf-8", "surrogatepass")


class SearchTexts:
    """Every product's `searchable_text`, in catalog order, in one buffer: what searches check."""

    def __init__(self, buffer: bytearray | None = None, starts: array[int] | None = None) -> None:
        """No texts yet, or the `parts` of texts made before (read from a saved catalog)."""
        self._buffer = bytearray() if buffer is None else buffer
        # Text i is _buffer[_starts[i]:_starts[i + 1]].
        self._starts = array("Q", [0]) if starts is None else starts

    @property
    def parts(self) -> tuple[bytearray, array[int]]:
        """The texts one after the other, and where each starts (and the last ends)."""
        return self._buffer, self._starts

    def add(self, name: str, description: str) -> None:
        """Append the next product's text."""
        self._buffer += searchable_text(name, description)
        self._starts.append(len(self._buffer))

    def add_many(
        self,
        names: Sequence[str],
        descriptions: Sequence[str],
        utf8: tuple[Sequence[bytes], Sequence[bytes]],
    ) -> None:
        """`add` each name with its description, given as UTF-8 too (`utf8`), with C doing the loops."""
        texts = list(map(bytes.lower, map(_FIELD_SEPARATOR.join, zip(*utf8, strict=True))))
        # bytes.lower lowers ASCII letters only, which is str.lower on ASCII text: the few texts with other
        # characters are made again, as `add` makes them.
        ascii_only = map(and_, map(str.isascii, names), map(str.isascii, descriptions))
        for position in compress(count(), map(not_, ascii_only)):
            texts[position] = searchable_text(names[position], descriptions[position])
        self._starts.extend(islice(accumulate(map(len, texts), initial=len(self._buffer)), 1, None))
        self._buffer += b"".join(texts)

    def __len__(self) -> int:
        return len(self._starts) - 1

    def __iter__(self) -> Iterator[bytes]:
        starts = self._starts
        with memoryview(self._buffer) as buffer:  # bytes slices, copied once
            for position in range(len(self)):
                yield bytes(buffer[starts[position] : starts[position + 1]])

    def contains(self, position: int, needle: bytes) -> bool:
        """Whether the text of the product at `position` contains `needle` (`to_needle`)."""
        return self._buffer.find(needle, self._starts[position], self._starts[position + 1]) >= 0


class SearchIndex:
    """Which products contain a lower-cased needle in their lower-cased name or description, in order.

    A search must give the seed's answers: product p matches iff `needle in p.name.lower() or needle in
    p.description.lower()`, which is `to_needle(query) in searchable_text(...)`: all of it works on UTF-8
    bytes. Scanning every product for that costs the whole catalog per query; instead:

    - Each field is split into words at ASCII whitespace, and each distinct word (the vocabulary, far
      smaller than the catalog) lists the positions of the products that contain it, in an array.
    - The needle's own pieces (split the same way) can only occur inside words, so a product can match
      only if, for every piece, one of its words contains that piece. Which words contain a piece comes
      from the vocabulary's trigrams (of bytes): for a 3-byte piece, its trigram's words; for a longer
      one, the words of its rarest trigrams, checked; for a 1- or 2-byte piece, the words of the trigrams
      containing it (and the words too short to have a trigram, indexed under their own substrings).
    - Those products, taken for the piece with the fewest, are the candidates; each one is checked
      against the real text, so the index only narrows such a search and never decides a match.
    - Except for the query users send most, one word: a needle without whitespace is its own only
      piece, and a product holding a word that contains it contains it (a word is part of the text, and
      the separator is in no word and no needle). Its candidates are its matches, sent unchecked:
      checking one cost more than sending it.

    An absent substring, even one or two characters long, is answered without touching any product. A
    needle whose candidates are a large share of the catalog (a very common fragment) is answered by
    scanning in catalog order instead, which finds `limit` matches after a short stretch because they are
    dense. A needle of whitespace only has no pieces and is scanned too.
    """

    # Candidates above this share of the catalog are scanned in order rather than collected and sorted.
    DENSE_FRACTION = 8

    def __init__(self, texts: SearchTexts, positions_by_word: dict[bytes, array[int]] | None = None) -> None:
        """Index the products' texts; searches check candidates against them.

        `positions_by_word` is an index's own (read from a saved catalog); without it, the texts are read.
        """
        self._texts = texts
        self._count = len(texts)
        self._positions_by_word = (
            _positions_by_word(texts) if positions_by_word is None else positions_by_word
        )
        # Trigram -> the words containing it; a word shorter than that is listed under its own
        # 1- and 2-byte substrings instead.
        words_by_gram: defaultdict[bytes, list[bytes]] = defaultdict(list)
        for word in self._positions_by_word:
            for gram in _grams(word):
                words_by_gram[gram].append(word)
        self._words_by_gram = dict(words_by_gram)
        # 1- or 2-byte piece -> the trigrams containing it: a word of 3 or more bytes contains such a
        # piece iff one of its trigrams does. Indexing every word's 1- and 2-byte substrings directly
        # would triple the index for catalogs with many distinct words.
        trigrams_containing: defaultdict[bytes, list[bytes]] = defaultdict(list)
        for gram in self._words_by_gram:
            if len(gram) == _GRAM:
                for short in _grams(gram[:2]) | _grams(gram[1:]):
                    trigrams_containing[short].append(gram)
        self._trigrams_containing = dict(trigrams_containing)
        self._dense = max(1, self._count // self.DENSE_FRACTION)

    @property
    def positions_by_word(self) -> dict[bytes, array[int]]:
        """Each word of the texts with the positions of the texts holding it: what a saved catalog keeps."""
        return self._positions_by_word

    def matches(self, needle: bytes) -> Iterator[int | None]:
        """Positions of the products whose text contains `needle` (`to_needle`), in catalog order.

        A None between every two stretches of SEARCH_STEP candidates: see CatalogStore.search_in_steps.
        """
        contains = self._texts.contains
        candidates, exact = self._candidates(needle)
        for start in range(0, len(candidates), SEARCH_STEP):
            if start:
                yield None
            stretch = candidates[start : start + SEARCH_STEP]
            if exact:
                yield from stretch
                continue
            for position in stretch:
                if contains(position, needle):
                    yield position

    def _candidates(self, needle: bytes) -> tuple[Sequence[int], bool]:
        """The positions that may contain `needle`, in order, and whether they all do (see the class)."""
        pieces = set(needle.split())
        best: list[array[int]] | None = None
        best_total = self._count + 1
        for piece in pieces:
            postings = self._postings(piece)
            if postings is None:
                continue  # a common fragment: it narrows the search too little to be worth collecting
            total = sum(map(len, postings))
            if total == 0:
                return (), True  # some piece occurs in no word: nothing can match
            if total < best_total:
                best, best_total = postings, total
        if best is None:
            return range(self._count), False
        exact = pieces == {needle}  # one word's worth: every product listed holds the needle
        if len(best) == 1:
            return best[0], exact  # one word's positions: already in catalog order
        # Sorted runs merge in near-linear time (a set union then a sort took 6x longer); the products
        # listed under more than one of the piece's words are then adjacent.
        return list(_skip_repeats(sorted(chain.from_iterable(best)))), exact

    def _postings(self, piece: bytes) -> list[array[int]] | None:
        """The positions arrays of the words containing `piece`; None when they add up to a large share."""
        postings: list[array[int]] = []
        total = 0
        for word in self._words_containing(piece):
            positions = self._positions_by_word[word]
            postings.append(positions)
            total += len(positions)
            if total >= self._dense and len(postings) > 1:
                return None
        return postings

    def _words_containing(self, piece: bytes) -> Iterable[bytes]:
        if len(piece) < _GRAM:
            return self._words_containing_short(piece)
        if len(piece) == _GRAM:
            return self._words_by_gram.get(piece, ())
        lists = []
        for start in range(len(piece) - _GRAM + 1):
            words = self._words_by_gram.get(piece[start : start + _GRAM])
            if words is None:
                return ()
            lists.append(words)
        lists.sort(key=len)
        common = set(lists[0]).intersection(*lists[1:3])  # the rarest few narrow enough; then check
        return [word for word in lists[0] if word in common and piece in word]

    def _words_containing_short(self, piece: bytes) -> Iterator[bytes]:
        yield from self._words_by_gram.get(piece, ())  # words shorter than a trigram
        seen: set[bytes] = set()
        for gram in self._trigrams_containing.get(piece, ()):
            for word in self._words_by_gram[gram]:
                if word not in seen:
                    seen.add(word)
                    yield word


def _positions_by_word(texts: SearchTexts) -> dict[bytes, array[int]]:
    """Each word (split at ASCII whitespace) of the texts, with the positions of the texts holding it."""
    positions_by_word: defaultdict[bytes, array[int]] = defaultdict(partial(array, "I"))
    for position, text in enumerate(texts):
        for word in set(text.replace(_FIELD_SEPARATOR, b" ").split()):
            positions_by_word[word].append(position)
    return dict(positions_by_word)


def _skip_repeats(positions: Iterable[int]) -> Iterator[int]:
    previous = -1
    for position in positions:
        if position != previous:
            previous = position
            yield position


def _grams(word: bytes) -> set[bytes]:
    """The word's trigrams; for a word shorter than that, all its 1- and 2-byte substrings."""
    if len(word) >= _GRAM:
        return {word[start : start + _GRAM] for start in range(len(word) - _GRAM + 1)}
    return {word[start : start + size] for size in (1, 2) for start in range(len(word) - size + 1)}
