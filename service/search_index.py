"""The trigram search index: which products contain a needle, without scanning the whole catalog.

Plain Python over the products' names and descriptions; the store decides when to build it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain

from catalog.catalog_pb2 import Product

# Products a search checks between two chances for other calls to run: about half a millisecond.
SEARCH_STEP = 2000
_GRAM = 3


class SearchIndex:
    """Which products contain a lower-cased needle in their lower-cased name or description, in order.

    A search must give the seed's answers: product p matches iff `needle in p.name.lower() or needle in
    p.description.lower()`. Scanning every product for that costs the whole catalog per query; instead:

    - Each field is split into whitespace-separated words, and each distinct word (the vocabulary, far
      smaller than the catalog) lists the positions of the products that contain it.
    - The needle's own whitespace-separated pieces can only occur inside words, so a product can match
      only if, for every piece, one of its words contains that piece. Which words contain a piece comes
      from the vocabulary's trigrams: for a 3-character piece, its trigram's words; for a longer one, the
      words of its rarest trigrams, checked; for a 1- or 2-character piece, the words of the trigrams
      containing it (and the words too short to have a trigram, indexed under their own substrings).
    - Those products, taken for the piece with the fewest, are the candidates; each one is checked
      against the real text, so the index only ever narrows the search and never decides a match.

    An absent substring, even one or two characters long, is answered without touching any product. A
    needle whose candidates are a large share of the catalog (a very common fragment) is answered by
    scanning in catalog order instead, which finds `limit` matches after a short stretch because they are
    dense. A needle of whitespace only has no pieces and is scanned too.
    """

    # Candidates above this share of the catalog are scanned in order rather than collected and sorted.
    DENSE_FRACTION = 8

    def __init__(self, products: Sequence[Product]) -> None:
        # Lower-cased once here, so a candidate check is two substring tests.
        self._texts = tuple((p.name.lower(), p.description.lower()) for p in products)
        positions_by_word: defaultdict[str, list[int]] = defaultdict(list)
        for position, (name, description) in enumerate(self._texts):
            for word in {*name.split(), *description.split()}:
                positions_by_word[word].append(position)
        self._positions_by_word = dict(positions_by_word)
        # Trigram -> the words containing it; a word shorter than that is listed under its own
        # 1- and 2-character substrings instead.
        words_by_gram: defaultdict[str, list[str]] = defaultdict(list)
        for word in self._positions_by_word:
            for gram in _grams(word):
                words_by_gram[gram].append(word)
        self._words_by_gram = dict(words_by_gram)
        # 1- or 2-character piece -> the trigrams containing it: a word of 3 or more characters
        # contains such a piece iff one of its trigrams does. Indexing every word's 1- and 2-character
        # substrings directly would triple the index for catalogs with many distinct words.
        trigrams_containing: defaultdict[str, list[str]] = defaultdict(list)
        for gram in self._words_by_gram:
            if len(gram) == _GRAM:
                for short in _grams(gram[:2]) | _grams(gram[1:]):
                    trigrams_containing[short].append(gram)
        self._trigrams_containing = dict(trigrams_containing)
        self._dense = max(1, len(products) // self.DENSE_FRACTION)

    def matches(self, needle: str) -> Iterator[int | None]:
        """Positions of the products containing `needle` (already lower-cased), in catalog order.

        A None between every two stretches of SEARCH_STEP candidates: see CatalogStore.search_in_steps.
        """
        texts = self._texts
        candidates = self._candidates(needle)
        for start in range(0, len(candidates), SEARCH_STEP):
            if start:
                yield None
            for position in candidates[start : start + SEARCH_STEP]:
                name, description = texts[position]
                if needle in name or needle in description:
                    yield position

    def _candidates(self, needle: str) -> Sequence[int]:
        best: list[list[int]] | None = None
        best_total = len(self._texts) + 1
        for piece in set(needle.split()):
            postings = self._postings(piece)
            if postings is None:
                continue  # a common fragment: it narrows the search too little to be worth collecting
            total = sum(map(len, postings))
            if total == 0:
                return ()  # some piece occurs in no word: nothing can match
            if total < best_total:
                best, best_total = postings, total
        if best is None:
            return range(len(self._texts))
        if len(best) == 1:
            return best[0]  # one word's positions: already in catalog order
        # Sorted runs merge in near-linear time (a set union then a sort took 6x longer); the products
        # listed under more than one of the piece's words are then adjacent.
        return list(_skip_repeats(sorted(chain.from_iterable(best))))

    def _postings(self, piece: str) -> list[list[int]] | None:
        """The positions lists of the words containing `piece`; None when they add up to a large share."""
        postings: list[list[int]] = []
        total = 0
        for word in self._words_containing(piece):
            positions = self._positions_by_word[word]
            postings.append(positions)
            total += len(positions)
            if total >= self._dense and len(postings) > 1:
                return None
        return postings

    def _words_containing(self, piece: str) -> Iterable[str]:
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

    def _words_containing_short(self, piece: str) -> Iterator[str]:
        yield from self._words_by_gram.get(piece, ())  # words shorter than a trigram
        seen: set[str] = set()
        for gram in self._trigrams_containing.get(piece, ()):
            for word in self._words_by_gram[gram]:
                if word not in seen:
                    seen.add(word)
                    yield word


def _skip_repeats(positions: Iterable[int]) -> Iterator[int]:
    previous = -1
    for position in positions:
        if position != previous:
            previous = position
            yield position


def _grams(word: str) -> set[str]:
    """The word's trigrams; for a word shorter than that, all its 1- and 2-character substrings."""
    if len(word) >= _GRAM:
        return {word[start : start + _GRAM] for start in range(len(word) - _GRAM + 1)}
    return {*word, *(word[start : start + 2] for start in range(len(word) - 1))}
