"""Teach the model to copy names, places and numbers: substitute them consistently on both sides.

Tatoeba says "Tom" and "Mary" in tens of thousands of pairs and almost nothing else, so a model trained
on it spells an unseen name out of tiny pieces and loops. For a pair whose French and English sides
both contain the same first name, city or digit string, :func:`augment_pair` replaces every occurrence
on both sides by one random stand-in: a first name or city from Faker's offline lists (many locales),
or a number with as many digits. The model then sees thousands of names it must copy piece by piece.

Names and cities are split by a hash into a training pool and a held-out pool (:func:`entity_pools`):
the name-copy test (``scripts/name_copy.py``) uses only held-out ones, so its names are unseen.
"""
from __future__ import annotations

import importlib
import random
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache

NAME_LOCALES = ("fr_FR", "en_US", "en_GB", "de_DE", "es_ES", "it_IT", "nl_NL", "pt_PT", "pl_PL", "sv_SE")
CITY_LOCALES = ("de_DE", "nl_NL", "pt_PT", "pl_PL", "sv_SE", "it_IT")
# Places people type that Faker's lists lack; they are detected in the data and used as stand-ins.
KNOWN_CITIES = (
    "Paris", "Lyon", "Marseille", "Toulouse", "Nice", "Nantes", "Strasbourg", "Montpellier", "Bordeaux",
    "Lille", "Rennes", "Reims", "Grenoble", "Dijon", "Angers", "Brest", "Limoges", "Tours", "Amiens",
    "Metz", "Besançon", "Orléans", "Rouen", "Caen", "Nancy", "Avignon", "Boston", "Chicago", "Tokyo",
    "Berlin", "Madrid", "Sydney", "Toronto", "Montréal", "Québec", "Genève", "Bruxelles", "Kyoto",
    "Osaka", "Dallas", "Seattle", "Denver", "Houston", "Atlanta", "Miami", "Detroit", "Oslo", "Dublin",
    "Berne", "Zurich", "Bâle", "Lausanne", "Liège", "Namur", "Dakar", "Abidjan", "Tunis", "Alger",
)
HELD_OUT_EVERY = 8  # one name or city in eight is kept for the name-copy test


def _held_out(word: str) -> bool:
    return zlib.crc32(word.encode("utf-8")) % HELD_OUT_EVERY == 0


def _plain(word: str) -> bool:
    return bool(re.fullmatch(r"[^\W\d_][^\W\d_'’-]{1,14}", word)) and word[0].isupper()


@dataclass(frozen=True)
class Pools:
    names: tuple[str, ...]
    cities: tuple[str, ...]


@lru_cache(maxsize=1)
def entity_pools() -> tuple[Pools, Pools]:
    """(training pool, held-out pool) of first names and cities, from Faker's offline data."""
    names: set[str] = set()
    for loc in NAME_LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        names.update(n for n in provider.first_names if _plain(n))
    cities: set[str] = set(KNOWN_CITIES)
    for loc in CITY_LOCALES:
        provider = importlib.import_module(f"faker.providers.address.{loc}").Provider
        cities.update(c for c in sorted(provider.cities)[:600] if _plain(c))  # sorted: the same 600 in every process
    cities -= names
    train = Pools(tuple(sorted(n for n in names if not _held_out(n))), tuple(sorted(c for c in cities if not _held_out(c))))
    held = Pools(tuple(sorted(n for n in names if _held_out(n))), tuple(sorted(c for c in cities if _held_out(c))))
    return train, held


# Names Tatoeba uses over and over, whatever Faker's lists say.
TATOEBA_NAMES = ("Tom", "Mary", "John", "Alice", "Jack", "Ken", "Mike", "Bill", "Jim", "Bob", "Dan", "Jane")
_WORD = re.compile(r"[^\W\d_][^\W\d_'’-]*")
_NUMBER = re.compile(r"(?<![\d.,])\d{1,6}(?![\d.,]?\d)")
_VOWEL_ELISION = re.compile(r"(?:\b[dDlLjJ]|\b[Qq]u|\b[Jj]usqu|\b[Ll]orsqu|\b[Pp]uisqu)['’]$")


@lru_cache(maxsize=1)
def _detectable() -> tuple[frozenset[str], frozenset[str]]:
    train, held = entity_pools()
    names = frozenset(train.names + held.names + TATOEBA_NAMES)
    cities = frozenset(train.cities + held.cities)
    return names, cities


def _replace_word(text: str, old: str, new_for: "callable") -> str:
    """Replace ``old`` as a whole word; ``new_for(prefix)`` picks the stand-in given the text before it."""
    out, last = [], 0
    for m in re.finditer(rf"(?<![^\W\d_]){re.escape(old)}(?![^\W\d_])", text):
        out.append(text[last : m.start()])
        out.append(new_for(text[: m.start()]))
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def substitutable(fr: str, en: str) -> list[tuple[str, str]]:
    """(kind, string) of every name, city or number written identically on both sides."""
    names, cities = _detectable()
    shared = set(_WORD.findall(fr)) & set(_WORD.findall(en))
    found = [("name", w) for w in sorted(shared) if w in names]
    found += [("city", w) for w in sorted(shared) if w in cities and w not in names]
    numbers = set(_NUMBER.findall(fr)) & set(_NUMBER.findall(en))
    found += [("number", n) for n in sorted(numbers)]
    return found


def _stand_in(kind: str, old: str, rng: random.Random, pools: Pools) -> tuple[str, str]:
    """A random replacement; for words, one starting with a vowel and one with a consonant, so French
    elision ("d'Alice", "de Paul") can stay grammatical whichever the slot needs."""
    if kind == "number":
        digits = len(old)
        low = 0 if digits == 1 else 10 ** (digits - 1)
        value = str(rng.randint(low, 10**digits - 1))
        return value, value
    pool = pools.names if kind == "name" else pools.cities
    vowel = [w for w in pool if w[0] in "AEIOUYÉÈÂÎÔ"]
    consonant = [w for w in pool if w[0] not in "AEIOUYÉÈÂÎÔ"]
    return rng.choice(vowel), rng.choice(consonant)


def augment_pair(fr: str, en: str, rng: random.Random, pools: Pools | None = None) -> tuple[str, str] | None:
    """The pair with every shared name/city/number replaced consistently, or None if it has none."""
    pools = pools or entity_pools()[0]
    found = substitutable(fr, en)
    if not found:
        return None
    for kind, old in found:
        vowel_form, consonant_form = _stand_in(kind, old, rng, pools)
        if kind == "number":
            fr = re.sub(rf"(?<![\d.,]){old}(?![\d])", vowel_form, fr)
            en = re.sub(rf"(?<![\d.,]){old}(?![\d])", vowel_form, en)
            continue
        # The French slot decides the form: after an elided article it needs a vowel, elsewhere the
        # original's own first letter is a safe guide; English takes the same word.
        def pick(prefix: str, old=old, v=vowel_form, c=consonant_form) -> str:
            if _VOWEL_ELISION.search(prefix):
                return v
            return v if old[0] in "AEIOUYÉÈÂÎÔ" else c

        chosen = pick("")
        fr = _replace_word(fr, old, pick)
        en = _replace_word(en, old, lambda _p, w=chosen: w)
        # An elided slot may have picked the other form; English must match what French says.
        if chosen not in fr:
            other = vowel_form if chosen == consonant_form else consonant_form
            en = en.replace(chosen, other)
    return fr, en


def augment(pairs: list[tuple[str, str]], rate: float, seed: int) -> list[tuple[str, str]]:
    """Augmented copies (not the originals) of the pairs that have something to copy: ``rate`` copies
    per such pair on average (0.5: half of them get one; 2: each gets two, every copy drawn afresh)."""
    if rate < 0:
        raise ValueError(f"augmentation rate must be >= 0, got {rate}")
    rng = random.Random(seed)
    pools = entity_pools()[0]
    whole, fraction = divmod(rate, 1.0)
    out = []
    for fr, en in pairs:
        # One draw per pair whatever the rate, so a rate below 1 gives the same copies as it always has.
        copies = int(whole) + (rng.random() < fraction)
        for _ in range(copies):
            new = augment_pair(fr, en, rng, pools)
            if new is None:
                break
            out.append(new)
    return out
