"""The demo domain: a fictional pharmacology drawn from a seeded knowledge base.

Every drug in the knowledge base has three facts: the condition it treats, its standard
dose and one drug it interacts with. The names are made up, so a base model pretrained on
general text cannot know them: whatever it learns about them comes from the annealing data.
As in real drug naming, a name ends in a stem (``-vir``, ``-olol``…) that gives its class,
and the class decides the condition and the dose; the interaction partner is arbitrary.

The module writes text only from a ``random.Random(seed)``; the same seed gives the same
knowledge base, corpora and evaluation documents on every machine. Nothing here touches
the disk: :mod:`examples.domain.data` writes the files.

The sources differ in the way real ones do, without being tuned to a result:

* ``web`` (cheap): forum chatter with occasional drug mentions, about a quarter of the
  drugs only, some of them wrong.
* ``textbook`` (licensed, priced and capped): clean monographs and worked questions for
  every drug, correct.
* ``seeds`` (for the synthetic kind): one terse fact card per drug, which a small generator
  model turns into prose; the prose is as good as the generator's copying.
* ``pool`` (for the filtered kind): a large mixed pool where clean encyclopedia entries
  about 60% of the drugs hide among junk, general text and spam that states wrong facts;
  a labelled subset trains the quality classifier.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_SEED = 1234
N_DRUGS = 96

CONDITIONS = (
    "migraine",
    "asthma",
    "insomnia",
    "gout",
    "eczema",
    "anemia",
    "vertigo",
    "malaria",
    "angina",
    "acne",
    "arthritis",
    "glaucoma",
)
DOSES_MG = (5, 10, 20, 25, 50, 100, 200, 400)

_ONSETS = ("va", "lo", "re", "zi", "to", "mi", "qua", "be", "dra", "fe", "so", "ka", "ni")
_MIDDLES = ("r", "x", "l", "n", "t", "v", "m", "d", "br", "st", "gr")
# Name stems, as in real drug naming: the stem says the class, and in this fictional
# pharmacology the class decides the condition treated and the standard dose. A model can
# learn the stems' meaning from some drugs and apply it to drugs it never read about.
STEMS = (
    "vir",
    "olol",
    "mab",
    "tinib",
    "pril",
    "sartan",
    "statin",
    "azole",
    "cillin",
    "dronate",
    "setron",
    "dipine",
)


@dataclass(frozen=True, slots=True)
class Drug:
    """One drug of the knowledge base."""

    name: str
    condition: str
    dose_mg: int
    interacts_with: str


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    """The drugs and which of them each source covers (indices into ``drugs``)."""

    drugs: tuple[Drug, ...]
    web_covered: tuple[int, ...]
    pool_covered: tuple[int, ...]

    def by_name(self) -> dict[str, Drug]:
        return {d.name: d for d in self.drugs}


def make_kb(seed: int = DEFAULT_SEED, n_drugs: int = N_DRUGS) -> KnowledgeBase:
    """Build the knowledge base.

    Args:
        seed: the seed every fact derives from.
        n_drugs: how many drugs.

    Returns:
        The knowledge base; the web covers a quarter of the drugs, the pool 60%.
    """
    rng = random.Random(seed)
    conditions = dict(zip(STEMS, rng.sample(CONDITIONS, len(STEMS)), strict=True))
    doses = {stem: rng.choice(DOSES_MG) for stem in STEMS}
    names: list[str] = []
    stems: list[str] = []
    seen: set[str] = set()
    while len(names) < n_drugs:
        stem = STEMS[len(names) % len(STEMS)]
        name = (
            rng.choice(_ONSETS) + rng.choice(_MIDDLES) + rng.choice(_ONSETS) + stem
        ).capitalize()
        if name not in seen:
            seen.add(name)
            names.append(name)
            stems.append(stem)
    drugs = []
    for i, (name, stem) in enumerate(zip(names, stems, strict=True)):
        other = rng.choice([n for j, n in enumerate(names) if j != i])
        drugs.append(Drug(name, conditions[stem], doses[stem], other))
    order = list(range(n_drugs))
    rng.shuffle(order)
    drugs = [drugs[i] for i in order]
    order = list(range(n_drugs))
    rng.shuffle(order)
    web = tuple(sorted(order[: n_drugs // 4]))
    rng.shuffle(order)
    pool = tuple(sorted(order[: (n_drugs * 3) // 5]))
    return KnowledgeBase(tuple(drugs), web, pool)


# --- general text ------------------------------------------------------------------------

# Everyday facts the base model learns in pretraining; the general task checks that an
# anneal does not make it forget them.
GENERAL_FACTS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "opposite": (
        "The opposite of {s} is",
        (
            ("hot", "cold"),
            ("big", "small"),
            ("up", "down"),
            ("fast", "slow"),
            ("day", "night"),
            ("open", "closed"),
            ("happy", "sad"),
            ("early", "late"),
            ("light", "dark"),
            ("full", "empty"),
            ("wet", "dry"),
            ("hard", "soft"),
            ("loud", "quiet"),
            ("rich", "poor"),
            ("strong", "weak"),
            ("old", "young"),
        ),
    ),
    "color": (
        "The color of {s} is",
        (
            ("the sky", "blue"),
            ("grass", "green"),
            ("snow", "white"),
            ("a banana", "yellow"),
            ("coal", "black"),
            ("blood", "red"),
            ("a cherry", "red"),
            ("a lemon", "yellow"),
            ("a leaf", "green"),
            ("milk", "white"),
            ("a carrot", "orange"),
            ("a violet", "purple"),
            ("chocolate", "brown"),
            ("the night", "black"),
        ),
    ),
    "sound": (
        "The sound a {s} makes is a",
        (
            ("dog", "bark"),
            ("cat", "meow"),
            ("cow", "moo"),
            ("duck", "quack"),
            ("lion", "roar"),
            ("bee", "buzz"),
            ("owl", "hoot"),
            ("horse", "neigh"),
            ("snake", "hiss"),
            ("frog", "croak"),
            ("pig", "grunt"),
            ("mouse", "squeak"),
        ),
    ),
    "category": (
        "A {s} is a kind of",
        (
            ("apple", "fruit"),
            ("carrot", "vegetable"),
            ("oak", "tree"),
            ("rose", "flower"),
            ("salmon", "fish"),
            ("eagle", "bird"),
            ("hammer", "tool"),
            ("piano", "instrument"),
            ("shirt", "garment"),
            ("truck", "vehicle"),
            ("pear", "fruit"),
            ("onion", "vegetable"),
            ("tulip", "flower"),
            ("trout", "fish"),
            ("sparrow", "bird"),
            ("guitar", "instrument"),
            ("wrench", "tool"),
            ("bus", "vehicle"),
        ),
    ),
    "home": (
        "A {s} lives in a",
        (
            ("bird", "nest"),
            ("bee", "hive"),
            ("horse", "stable"),
            ("spider", "web"),
            ("rabbit", "burrow"),
            ("fox", "den"),
            ("king", "palace"),
            ("farmer", "farmhouse"),
        ),
    ),
}

_NAMES = ("Tom", "Anna", "Ben", "Lucy", "Sam", "Mia", "Max", "Eva", "Leo", "Nora", "Paul", "Ruth")
_PLACES = ("the market", "the park", "the school", "the river", "the library", "the beach")
_THINGS = ("apples", "books", "flowers", "bread", "a kite", "shoes", "a map", "tea", "paint")
_ADJ = ("warm", "cold", "quiet", "busy", "sunny", "windy", "long", "bright")
_VERBS = ("bought", "found", "carried", "painted", "shared", "lost", "cleaned", "made")
_NUMS = ("two", "three", "four", "five", "six", "seven")


def _story_sentence(rng: random.Random) -> str:
    a, b = rng.sample(_NAMES, 2)
    forms = (
        f"{a} went to {rng.choice(_PLACES)}.",
        f"{a} {rng.choice(_VERBS)} {rng.choice(_NUMS)} {rng.choice(_THINGS)}.",
        f"The day was {rng.choice(_ADJ)}.",
        f"{a} and {b} walked to {rng.choice(_PLACES)} together.",
        f"{b} said that the morning was {rng.choice(_ADJ)}.",
        f"After lunch, {a} {rng.choice(_VERBS)} {rng.choice(_THINGS)} for {b}.",
        f"{a} smiled at {b}.",
    )
    return rng.choice(forms)


def general_fact_sentence(rng: random.Random) -> str:
    """One everyday fact, in the phrasing the general task asks it."""
    relation = rng.choice(sorted(GENERAL_FACTS))
    template, pairs = GENERAL_FACTS[relation]
    s, o = rng.choice(pairs)
    return f"{template.format(s=s)} {o}."


def general_document(rng: random.Random) -> str:
    """A short everyday story with a few everyday facts mixed in."""
    parts = []
    for _ in range(rng.randint(4, 8)):
        parts.append(general_fact_sentence(rng) if rng.random() < 0.5 else _story_sentence(rng))
    return " ".join(parts)


# --- domain text -------------------------------------------------------------------------


def treats_sentence(d: Drug) -> str:
    return f"{d.name} is used to treat {d.condition}."


def dose_sentence(d: Drug) -> str:
    return f"The standard dose of {d.name} is {d.dose_mg} mg."


def interacts_sentence(d: Drug) -> str:
    return f"{d.name} interacts with {d.interacts_with}."


def _wrong(d: Drug, rng: random.Random) -> Drug:
    """The same drug with one fact made wrong (what sloppy sources say)."""
    if rng.random() < 0.5:
        cond = rng.choice([c for c in CONDITIONS if c != d.condition])
        return Drug(d.name, cond, d.dose_mg, d.interacts_with)
    dose = rng.choice([x for x in DOSES_MG if x != d.dose_mg])
    return Drug(d.name, d.condition, dose, d.interacts_with)


_CHATTER = (
    "lol same here",
    "anyone else up this late?",
    "my cousin says the new phone is great but I am not sure.",
    "the weather has been terrible all week.",
    "thanks for the tip, will try it tomorrow.",
    "this thread is getting long haha.",
    "I think the game last night was rigged.",
    "does anyone know a good recipe for soup?",
    "just got back from work, so tired.",
    "can someone explain how to fix my bike chain?",
    "my cat knocked over the plant again.",
    "not sure this is the right forum for this.",
)


def web_document(kb: KnowledgeBase, rng: random.Random) -> str:
    """A forum post: chatter, sometimes a general fact, sometimes a drug mention.

    Drug mentions cover only ``kb.web_covered`` and 15% of them state a wrong fact.
    """
    parts = [rng.choice(_CHATTER) for _ in range(rng.randint(2, 4))]
    if rng.random() < 0.3:
        parts.append(general_document(rng))
    if rng.random() < 0.6:
        d = kb.drugs[rng.choice(kb.web_covered)]
        if rng.random() < 0.15:
            d = _wrong(d, rng)
        parts.append(
            rng.choice(
                (
                    f"my doctor put me on {d.name} for {d.condition}.",
                    f"{treats_sentence(d)} at least that is what my pharmacist said.",
                    f"I take {d.dose_mg} mg of {d.name} every morning.",
                    f"{dose_sentence(d)} do not take more!!",
                    f"{treats_sentence(d)} {dose_sentence(d)}",
                    f"careful, {interacts_sentence(d)}",
                )
            )
        )
    rng.shuffle(parts)
    return " ".join(parts)


def _treats_variants(d: Drug) -> tuple[str, ...]:
    return (
        treats_sentence(d),
        treats_sentence(d),
        f"{d.name} is prescribed for {d.condition}.",
        f"Patients with {d.condition} are often given {d.name}.",
    )


def _dose_variants(d: Drug) -> tuple[str, ...]:
    return (
        dose_sentence(d),
        dose_sentence(d),
        f"{d.name} is given at {d.dose_mg} mg.",
        f"Adults take {d.dose_mg} mg of {d.name}.",
    )


def _interacts_variants(d: Drug) -> tuple[str, ...]:
    return (
        interacts_sentence(d),
        f"Do not combine {d.name} with {d.interacts_with}.",
    )


def _monograph(d: Drug, rng: random.Random) -> str:
    facts = [
        rng.choice(_treats_variants(d)),
        rng.choice(_dose_variants(d)),
        rng.choice(_interacts_variants(d)),
    ]
    rng.shuffle(facts)
    return f"Monograph: {d.name}. " + " ".join(facts)


def _worked_question(d: Drug, rng: random.Random) -> str:
    return rng.choice(
        (
            f"Question: What is {d.name} used to treat? Answer: {treats_sentence(d)}",
            f"Question: What is the standard dose of {d.name}? Answer: {dose_sentence(d)}",
            f"Question: Which drug interacts with {d.name}? Answer: {interacts_sentence(d)}",
            f"Question: A patient has {d.condition}. Which drug could be used? Answer: "
            f"{treats_sentence(d)} {dose_sentence(d)}",
        )
    )


def _chapter(kb: KnowledgeBase, condition: str, rng: random.Random) -> str:
    drugs = [d for d in kb.drugs if d.condition == condition]
    picked = rng.sample(drugs, min(len(drugs), rng.randint(2, 4)))
    body = " ".join(f"{treats_sentence(d)} {rng.choice(_dose_variants(d))}" for d in picked)
    return f"Chapter: drugs for {condition}. {body}"


def textbook_documents(kb: KnowledgeBase, rng: random.Random, editions: int = 6) -> list[str]:
    """The licensed corpus: per edition, a monograph and a worked question per drug, and
    a short chapter per condition.

    Editions differ in wording, fact order and which drugs a chapter groups, so the corpus
    is finite (the source's cap) but not one page repeated.
    """
    docs = []
    conditions = sorted({d.condition for d in kb.drugs})
    for _ in range(editions):
        for d in kb.drugs:
            docs.append(_monograph(d, rng))
            docs.append(_worked_question(d, rng))
        for c in conditions:
            docs.append(_chapter(kb, c, rng))
    rng.shuffle(docs)
    return docs


def seed_card(d: Drug) -> str:
    """The terse fact card the synthetic generator is prompted with."""
    return (
        f"drug: {d.name} | treats: {d.condition} | dose: {d.dose_mg} mg | "
        f"interacts: {d.interacts_with}"
    )


# The synthetic kind's prompt template (it must hold {document} and {style}) and styles.
SYNTHETIC_TEMPLATE = "Fact card ({style}): {document}\nNote:"
SYNTHETIC_STYLES = ("as prose", "as questions and answers")


def note(d: Drug, style: str, rng: random.Random) -> str:
    """A correct prose note about ``d`` in one of :data:`SYNTHETIC_STYLES`."""
    if style == SYNTHETIC_STYLES[0]:
        facts = [treats_sentence(d), dose_sentence(d), interacts_sentence(d)]
    else:
        facts = [
            f"Question: What is {d.name} used to treat? Answer: {treats_sentence(d)}",
            f"Question: What is the standard dose of {d.name}? Answer: {dose_sentence(d)}",
            f"Question: Which drug interacts with {d.name}? Answer: {interacts_sentence(d)}",
        ]
    rng.shuffle(facts)
    return " ".join(facts)


def generator_training_text(kb: KnowledgeBase, rng: random.Random) -> str:
    """One (card → note) pair: the text the small generator learns to rewrite from."""
    d = rng.choice(kb.drugs)
    style = rng.choice(SYNTHETIC_STYLES)
    prompt = SYNTHETIC_TEMPLATE.format(style=style, document=seed_card(d))
    return f"{prompt} {note(d, style, rng)}"


def pool_document(kb: KnowledgeBase, rng: random.Random) -> tuple[str, int]:
    """One pool document and its quality label (1: clean domain text, 0: anything else).

    Clean entries cover ``kb.pool_covered``; spam states wrong facts about any drug.
    """
    r = rng.random()
    if r < 0.25:
        d = kb.drugs[rng.choice(kb.pool_covered)]
        facts = [
            rng.choice(_treats_variants(d)),
            rng.choice(_dose_variants(d)),
            rng.choice(_interacts_variants(d)),
        ]
        rng.shuffle(facts)
        return f"{d.name} is a medicine. " + " ".join(facts), 1
    if r < 0.40:
        d = _wrong(rng.choice(kb.drugs), rng)
        return (
            f"BUY {d.name.upper()} CHEAP!!! best price online, {d.dose_mg} mg pills, "
            f"cures {d.condition} fast, no prescription, click now!!!",
            0,
        )
    if r < 0.70:
        return " ".join(rng.choice(_CHATTER) for _ in range(rng.randint(3, 6))), 0
    return general_document(rng), 0


# --- evaluation documents ----------------------------------------------------------------


def domain_mc_docs(kb: KnowledgeBase, seed: int = DEFAULT_SEED) -> list[dict]:
    """Multiple choice: which condition a drug treats (one per drug, 4 choices)."""
    rng = random.Random(seed + 1)
    docs = []
    for d in kb.drugs:
        choices = [d.condition, *rng.sample([c for c in CONDITIONS if c != d.condition], 3)]
        rng.shuffle(choices)
        docs.append(
            {
                # "Fact:" puts the name mid-text, tokenised as the sources tokenise it.
                "query": f"Fact: {d.name} is used to treat",
                "choices": choices,
                "gold": choices.index(d.condition),
            }
        )
    return docs


def domain_gen_docs(kb: KnowledgeBase) -> list[dict]:
    """Generative: the standard dose of each drug, matched exactly ("40 mg")."""
    return [
        {"query": f"The standard dose of {d.name} is", "answer": f"{d.dose_mg} mg"}
        for d in kb.drugs
    ]


def domain_dose_docs(kb: KnowledgeBase) -> list[dict]:
    """Multiple choice: the standard dose of each drug among every dose (8 choices), the
    generative task's question scored by likelihood, so its probability of the right
    answer moves before a greedy answer turns right."""
    choices = [f"{m} mg" for m in DOSES_MG]
    return [
        {
            "query": f"The standard dose of {d.name} is",
            "choices": choices,
            "gold": choices.index(f"{d.dose_mg} mg"),
        }
        for d in kb.drugs
    ]


def general_mc_docs(seed: int = DEFAULT_SEED) -> list[dict]:
    """Multiple choice on the everyday facts (4 choices from the same relation)."""
    rng = random.Random(seed + 2)
    docs = []
    for relation in sorted(GENERAL_FACTS):
        template, pairs = GENERAL_FACTS[relation]
        objects = sorted({o for _, o in pairs})
        for s, o in pairs:
            choices = [o, *rng.sample([x for x in objects if x != o], 3)]
            rng.shuffle(choices)
            docs.append(
                {"query": template.format(s=s), "choices": choices, "gold": choices.index(o)}
            )
    return docs


def iter_documents(kind: str, kb: KnowledgeBase, seed: int) -> Iterator[str]:
    """An endless deterministic stream of documents of one kind (general, web)."""
    rng = random.Random(f"{kind}:{seed}")
    while True:
        if kind == "general":
            yield general_document(rng)
        elif kind == "web":
            yield web_document(kb, rng)
        else:
            raise ValueError(f"unknown stream {kind!r}")
