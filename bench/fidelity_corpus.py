"""The fidelity benchmark's corpus: multi-session chats in Russian and English with planted facts.

Deterministic: user ``i`` of language ``lang`` is generated from ``random.Random(f"{seed}:{lang}:{i}")``
alone, so the same seed gives the same corpus, and adding users does not change the existing ones.

Each user has ``sessions`` sessions, three days apart, of about 55 events each: a greeting, chatter
(user turns about their day, questions and the assistant's longer answers), one or two tool
exchanges (an assistant ``tool_calls`` message with ``content: null``, the ``tool`` result as JSON,
the assistant's answer), the fact-bearing user turns with a short acknowledgement, and a goodbye.
Small talk ("Thanks!", "Пока!") is part of it.

Planted facts, per user: three of each kind ``name`` (a sister's, a dog's, a colleague's name ...),
``number`` (a door code, a budget, a step goal ...), ``date`` (a birthday, a passport expiry ...),
``preference`` (vegetarian, jazz, an aisle seat ...), and three ``correction``\\ s: a number, a name
and a date that a later session overrides ("my flat is 117" ... "we moved, the flat is now 243").
The overridden value is planted at least two sessions before the new one. Facts are spread evenly
over the sessions; in the last session they all come before its final ``tail`` events, so the last
compaction folds every one of them (the newest ``KEEP_LAST`` events stay verbatim by design).

Every fact has one value that the summary must hold, matched as in :func:`recalled`. A value is
*distinctive*: no other event of the user carries it by the same matching (checked at generation; a
value that collides with the chatter or another fact is drawn again), so a match in the summary can
only come from the event that planted it.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from memcompress.summarizers.carry import CarryIndex, carried, carry_index, extract_values

LANGUAGES = ("ru", "en")
KINDS = ("name", "number", "date", "preference", "correction")
T0 = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
SESSION_EVENTS = 55  # about this many events per session
SESSION_GAP = timedelta(days=3)

Document = dict[str, Any]

# --- matching --------------------------------------------------------------------------------------


def _fold(text: str) -> str:
    return text.casefold().replace("ё", "е")


@dataclass(frozen=True)
class Summary:
    """A summary indexed once for matching many values against it."""

    index: CarryIndex
    words: frozenset[str]

    @classmethod
    def of(cls, text: str | None) -> Summary:
        text = text or ""
        words = frozenset(_fold(w) for w in _words(text))
        return cls(carry_index(text), words)


def _words(text: str) -> list[str]:
    word: list[str] = []
    found: list[str] = []
    for char in text + " ":
        if char.isalnum():
            word.append(char)
        elif word:
            found.append("".join(word))
            word = []
    return found


def normalise(match: str, value: str) -> str:
    """The value as the matching compares it: the carry guard's normalised value (``1 500`` and
    ``1,500`` are ``1500``; ``17.04.2019`` and ``2019-04-17`` are ``2019-04-17``; names casefolded),
    or for a preference the casefolded stem."""
    if match in ("stem", "name"):
        return _fold(value)  # the carry guard's normalisation of names
    found = extract_values(value)[match]  # type: ignore[index]
    if len(found) != 1:
        raise ValueError(f"{value!r} is not exactly one {match}: {sorted(found)}")
    return next(iter(found))


def recalled(match: str, value: str, summary: Summary) -> bool:
    """Whether ``summary`` holds ``value``:

    * ``name``, ``number``, ``date``: by the carry guard's own rule (``carried``): the same normalised
      number or date (also written in words); a capitalised word starting like the name or sharing
      its Russian lemma or Latin transliteration (``Ксения`` is held by ``Ксенией``, ``Лев`` by ``Льва``).
    * ``stem`` (preferences): some word of the summary, casefolded with ``ё`` as ``е``, starts with the
      stem (``вегетариан`` is held by ``вегетарианка``, ``jazz`` by ``jazz``).
    """
    normal = normalise(match, value)
    if match == "stem":
        return any(word.startswith(normal) for word in summary.words)
    return carried(match, normal, summary.index)  # type: ignore[arg-type]


# --- the corpus ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    user_id: str
    language: str
    kind: str  # one of KINDS
    slot: str  # what it is about: "sister", "door_code", ...
    match: str  # "name", "number", "date" or "stem"
    value: str  # as written (the latest value of a correction)
    session: int  # 0-based session of the (latest) value
    event_id: str
    stale: str | None = None  # a correction's overridden value
    stale_session: int | None = None
    stale_event_id: str | None = None


@dataclass
class UserCorpus:
    user_id: str
    language: str
    sessions: list[list[Document]]
    facts: list[Fact]

    @property
    def events(self) -> int:
        return sum(len(s) for s in self.sessions)


@dataclass(frozen=True)
class Slot:
    """A kind of fact: how its value is drawn and the user turns that state it (``{v}``)."""

    name: str
    kind: str  # name, number, date, preference
    draw: Callable[[random.Random], str]
    templates: tuple[str, ...]
    updates: tuple[str, ...] = ()  # for a correction: the turns that override it

    @property
    def match(self) -> str:
        return "stem" if self.kind == "preference" else self.kind


def _pick(values: Sequence[str]) -> Callable[[random.Random], str]:
    return lambda rng: rng.choice(values)


def _int(low: int, high: int, step: int = 1, sep: str = "") -> Callable[[random.Random], str]:
    def draw(rng: random.Random) -> str:
        while True:
            n = rng.randrange(low, high, step)
            if not 1900 <= n <= 2100:  # never a year
                return f"{n:,}".replace(",", sep) if sep else str(n)

    return draw


def _date(years: tuple[int, int], style: str) -> Callable[[random.Random], str]:
    def draw(rng: random.Random) -> str:
        d = date(rng.randint(*years), rng.randint(1, 12), rng.randint(13, 28))  # day > 12: never ambiguous
        return {"iso": d.isoformat(), "dmy/": d.strftime("%d/%m/%Y"), "dmy.": d.strftime("%d.%m.%Y")}[style]

    return draw


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


EN_WOMEN = _names(
    "Margaret Priya Beatrice Imogen Noelle Ottilie Saoirse Juniper Rosalind Philippa Harriet Clementine"
)
EN_MEN = _names(
    "Oliver Declan Tobias Rafael Fergus Leopold Cormac Ezekiel Thaddeus Lysander Barnaby Ignatius"
)
EN_PETS = _names("Biscuit Pepper Waffles Pickle Noodle Marmalade Crumpet Tofu Mochi Pretzel")
RU_WOMEN = _names("Ксения Полина Василиса Злата Ульяна Таисия Дарина Милена Серафима Евдокия Агата Аглая")
RU_MEN = _names("Тимур Григорий Арсений Фёдор Мирон Елисей Всеволод Ярослав Святослав Прохор Богдан Платон")
RU_PETS = _names("Бублик Пломбир Кекс Пряник Тоффи Жужа Баксик Мармелад Сухарик Пельмень")

EN_SLOTS = (
    Slot(
        "sister",
        "name",
        _pick(EN_WOMEN),
        (
            "By the way, my sister {v} is coming to stay with us for a week.",
            "My sister {v} just called, she got the job she applied for!",
        ),
    ),
    Slot(
        "dog",
        "name",
        _pick(EN_PETS),
        (
            "Our dog is called {v}, and he chewed through my phone charger again.",
            "I took {v} to the vet this morning, he's our dog and he hates the car.",
        ),
    ),
    Slot(
        "colleague",
        "name",
        _pick(EN_WOMEN + EN_MEN),
        (
            "My colleague {v} will cover for me while I'm on holiday.",
            "I had lunch with {v} from work, we sit next to each other.",
        ),
    ),
    Slot(
        "friend",
        "name",
        _pick(EN_WOMEN + EN_MEN),
        (
            "I'm going to the cinema tonight with my best friend {v}.",
            "My oldest friend {v} is getting married in the summer, and I'm giving a speech.",
        ),
    ),
    Slot(
        "door_code",
        "number",
        _int(1000, 9999),
        (
            "The door code for our building is {v}, in case a courier asks.",
            "Remember that the entrance code downstairs is {v}.",
        ),
    ),
    Slot(
        "budget",
        "number",
        _int(320, 990, 10),
        (
            "My monthly budget for groceries is {v} pounds, please keep recipes within it.",
            "I can spend at most {v} pounds on the new bike.",
        ),
    ),
    Slot(
        "steps",
        "number",
        _int(6500, 15000, 250, sep=","),
        (
            "My daily goal is {v} steps, I track it on my watch.",
            "I set my step target to {v} a day, let's see if I manage.",
        ),
    ),
    Slot(
        "locker",
        "number",
        _int(101, 899),
        (
            "My locker at the gym is number {v}, I always forget it.",
            "The parking space that belongs to our flat is number {v}.",
        ),
    ),
    Slot(
        "daughter_birthday",
        "date",
        _date((2015, 2021), "iso"),
        (
            "My daughter was born on {v}, so I'll need party ideas every year.",
            "Our daughter's birthday is {v} (that's the date she was born).",
        ),
    ),
    Slot(
        "passport",
        "date",
        _date((2027, 2030), "dmy/"),
        (
            "My passport expires on {v}, remind me to renew it in time.",
            "I checked, my passport is valid until {v}.",
        ),
    ),
    Slot(
        "anniversary",
        "date",
        _date((2010, 2022), "dmy/"),
        (
            "We got married on {v}, the anniversary always sneaks up on me.",
            "Our wedding day was {v}, I want to plan something nice this year.",
        ),
    ),
    Slot(
        "vegetarian",
        "preference",
        _pick(("vegetarian",)),
        (
            "I'm vegetarian, so no meat in any recipes, please.",
            "Just so you know, I've been vegetarian for years.",
        ),
    ),
    Slot(
        "jazz",
        "preference",
        _pick(("jazz",)),
        (
            "I love jazz, especially the old recordings from the fifties.",
            "Put on some jazz for me, it's my favourite music to work to.",
        ),
    ),
    Slot(
        "coriander",
        "preference",
        _pick(("coriander",)),
        (
            "I can't stand coriander, it tastes like soap to me.",
            "Please never suggest coriander, I really hate it.",
        ),
    ),
    Slot(
        "aisle",
        "preference",
        _pick(("aisle",)),
        (
            "On flights I always prefer an aisle seat.",
            "When you book anything for me, I like the aisle, never the window.",
        ),
    ),
    Slot(
        "peanuts",
        "preference",
        _pick(("peanut",)),
        (
            "I'm allergic to peanuts, so check every recipe for them.",
            "Careful with desserts, I have a peanut allergy.",
        ),
    ),
    Slot(
        "bouldering",
        "preference",
        _pick(("bouldering",)),
        (
            "I enjoy bouldering on weekends, it clears my head.",
            "My favourite sport is bouldering, I go every Saturday.",
        ),
    ),
)
EN_CORRECTIONS = (
    Slot(
        "flat",
        "number",
        _int(101, 499),
        (
            "We live in flat {v}, on the third floor.",
            "Our flat number is {v} if you ever need the full address.",
        ),
        (
            "We moved last week! The new flat is number {v}.",
            "Update: after the move our flat is now {v}.",
        ),
    ),
    Slot(
        "manager",
        "name",
        _pick(EN_WOMEN),
        (
            "My manager is {v}, she approves all my leave requests.",
            "I report to {v}, she's my manager and quite strict about deadlines.",
        ),
        (
            "I have a new manager now, {v}, she started on Monday.",
            "There was a reshuffle at work and my manager is now {v}.",
        ),
    ),
    Slot(
        "dentist",
        "date",
        _date((2027, 2027), "iso"),
        (
            "My dentist appointment is on {v}, put it in the calendar.",
            "I booked the dentist for {v}.",
        ),
        (
            "The clinic called and moved my dentist appointment to {v}.",
            "Change of plans: the dentist is now on {v}.",
        ),
    ),
)

RU_SLOTS = (
    Slot(
        "sister",
        "name",
        _pick(RU_WOMEN),
        (
            "Кстати, мою сестру зовут {v}, она приезжает к нам на неделю.",
            "Сестра {v} позвонила, её взяли на ту работу, куда она хотела!",
        ),
    ),
    Slot(
        "dog",
        "name",
        _pick(RU_PETS),
        (
            "Нашего пса зовут {v}, он опять сгрыз зарядку от телефона.",
            "Утром возили пса к ветеринару, его зовут {v}, машину он ненавидит.",
        ),
    ),
    Slot(
        "colleague",
        "name",
        _pick(RU_WOMEN + RU_MEN),
        (
            "Пока я в отпуске, меня будет подменять коллега {v}.",
            "Обедала с коллегой по имени {v}, мы сидим рядом, и там все всех знают.",
        ),
    ),
    Slot(
        "friend",
        "name",
        _pick(RU_WOMEN + RU_MEN),
        (
            "Вечером идём в кино: я и {v}, мы дружим со школы.",
            "Кстати, {v} — мой самый близкий человек ещё со школы, дружим двадцать лет.",
        ),
    ),
    Slot(
        "door_code",
        "number",
        _int(1000, 9999),
        (
            "Код домофона у нас {v}, если курьер спросит.",
            "Запомни, код от подъезда {v}.",
        ),
    ),
    Slot(
        "budget",
        "number",
        _int(12000, 48000, 500, sep=" "),
        (
            "На продукты в месяц у меня {v} рублей, держи рецепты в этих рамках.",
            "На новый велосипед могу потратить максимум {v} рублей.",
        ),
    ),
    Slot(
        "steps",
        "number",
        _int(6500, 15000, 250, sep=" "),
        (
            "Моя цель {v} шагов в день, часы всё считают.",
            "Поставила себе норму {v} шагов в день, посмотрим, получится ли.",
        ),
    ),
    Slot(
        "locker",
        "number",
        _int(101, 899),
        (
            "Мой шкафчик в спортзале номер {v}, вечно его забываю.",
            "Наше парковочное место под номером {v}.",
        ),
    ),
    Slot(
        "daughter_birthday",
        "date",
        _date((2015, 2021), "dmy."),
        (
            "Дочка родилась {v}, так что идеи для праздника понадобятся каждый год.",
            "День рождения дочки {v}, это дата её рождения.",
        ),
    ),
    Slot(
        "passport",
        "date",
        _date((2027, 2030), "dmy."),
        (
            "Мой загранпаспорт действует до {v}, напомни вовремя поменять.",
            "Проверила: срок действия паспорта заканчивается {v}.",
        ),
    ),
    Slot(
        "anniversary",
        "date",
        _date((2010, 2022), "dmy."),
        (
            "Мы поженились {v}, годовщина всегда подкрадывается незаметно.",
            "Наша свадьба была {v}, в этом году хочу устроить что-то особенное.",
        ),
    ),
    Slot(
        "vegetarian",
        "preference",
        _pick(("вегетариан",)),
        (
            "Я вегетарианка, так что никакого мяса в рецептах, пожалуйста.",
            "Чтобы ты знал, я уже много лет вегетарианец.",
        ),
    ),
    Slot(
        "jazz",
        "preference",
        _pick(("джаз",)),
        (
            "Обожаю джаз, особенно старые записи пятидесятых.",
            "Включи мне джаз, под него лучше всего работается.",
        ),
    ),
    Slot(
        "coriander",
        "preference",
        _pick(("кинз",)),
        (
            "Терпеть не могу кинзу, для меня она на вкус как мыло.",
            "Никогда не предлагай блюда с кинзой, я её ненавижу.",
        ),
    ),
    Slot(
        "aisle",
        "preference",
        _pick(("проход",)),
        (
            "В самолёте всегда предпочитаю место у прохода.",
            "Когда что-то бронируешь для меня, выбирай место у прохода, не у окна.",
        ),
    ),
    Slot(
        "peanuts",
        "preference",
        _pick(("арахис",)),
        (
            "У меня аллергия на арахис, проверяй каждый рецепт.",
            "Осторожно с десертами, на арахис у меня аллергия.",
        ),
    ),
    Slot(
        "bouldering",
        "preference",
        _pick(("скалодром",)),
        (
            "По выходным хожу на скалодром, это лучше любой медитации.",
            "Мой любимый спорт скалолазание, каждую субботу езжу на скалодром.",
        ),
    ),
)
RU_CORRECTIONS = (
    Slot(
        "flat",
        "number",
        _int(101, 499),
        (
            "Мы живём в квартире {v}, на третьем этаже.",
            "Номер нашей квартиры {v}, если понадобится полный адрес.",
        ),
        (
            "Мы переехали на прошлой неделе! Теперь у нас квартира {v}.",
            "Обновление: после переезда номер квартиры {v}.",
        ),
    ),
    Slot(
        "manager",
        "name",
        _pick(RU_WOMEN),
        (
            "Мой руководитель {v}, все отпуска согласует только она.",
            "Я подчиняюсь человеку по имени {v}, это моя начальница, она строгая насчёт сроков.",
        ),
        (
            "У меня новая начальница, {v}, вышла в понедельник.",
            "На работе перестановки, теперь мой руководитель {v}.",
        ),
    ),
    Slot(
        "dentist",
        "date",
        _date((2027, 2027), "dmy."),
        (
            "Запись к стоматологу на {v}, внеси в календарь.",
            "Записалась к зубному на {v}.",
        ),
        (
            "Из клиники позвонили и перенесли стоматолога на {v}.",
            "Планы поменялись: к стоматологу теперь {v}.",
        ),
    ),
)

# --- chatter ---------------------------------------------------------------------------------------

Turn = tuple[str, str | None, dict[str, Any]]  # role, content (None: a tool call), other fields
Ask = tuple[str, str, tuple[dict[str, str], ...]]  # question, answer, the values of their fields


def _each(name: str, *values: str) -> tuple[dict[str, str], ...]:
    return tuple({name: value} for value in values)


@dataclass(frozen=True)
class _Language:
    slots: tuple[Slot, ...]
    corrections: tuple[Slot, ...]
    when: tuple[str, ...]
    did: tuple[str, ...]
    reaction: tuple[str, ...]
    did_replies: tuple[str, ...]
    mood: str  # a template with {state} and {reason}
    state: tuple[str, ...]
    reason: tuple[str, ...]
    mood_replies: tuple[str, ...]
    asks: tuple[Ask, ...]
    hello: tuple[str, ...]
    hello_reply: tuple[str, ...]
    bye: tuple[str, ...]
    bye_reply: tuple[str, ...]
    ack: tuple[str, ...]
    cities: tuple[str, ...]
    conditions: tuple[str, ...]
    weather_ask: str  # {city}
    weather_answer: str  # {city} {temp} {conditions} {wind}


EN = _Language(
    slots=EN_SLOTS,
    corrections=EN_CORRECTIONS,
    when=(
        "Yesterday",
        "This morning",
        "Last night",
        "On Sunday",
        "After work",
        "Earlier today",
        "Over lunch",
    ),
    did=(
        "I went for a long walk along the river",
        "I finally cleaned the balcony",
        "I tried the new ramen place near the station",
        "I watched a documentary about octopuses",
        "I fixed the squeaky kitchen door",
        "I baked bread for the first time",
        "we had the neighbours over for tea",
        "I spent two hours on a work presentation",
        "I repotted the plants on the windowsill",
        "I cycled to the market and back",
        "we played board games with the kids",
        "I sorted out the wardrobe",
        "I went to a pottery class",
        "I painted the hallway",
        "I made soup for the whole week",
        "I visited my parents",
        "I helped a friend carry a sofa up four flights of stairs",
        "I went swimming before work",
        "I finally answered all my emails",
        "I built a bookshelf from a flat-pack kit",
        "we watched the football at the pub",
        "I tried a yoga video",
        "I cleaned out the fridge",
        "I wandered around the flea market",
    ),
    reaction=(
        "and it was lovely",
        "honestly not bad",
        "and now I'm exhausted",
        "and I'd do it again",
        "not sure it was worth it",
        "and it took longer than I thought",
        "which felt great",
    ),
    did_replies=(
        "That sounds like a good day.",
        "Nice, small wins count!",
        "Sounds like you earned a quiet evening.",
        "Ha, these things always take longer than planned.",
        "Good for you!",
        "That sounds fun. Would you do it again?",
        "Lovely. Anything planned for tomorrow?",
    ),
    mood="I'm {state} today, {reason}.",
    state=("a bit tired", "stressed", "sleepy", "distracted", "low on energy", "restless", "grumpy"),
    reason=(
        "work has been hectic",
        "the weather is grim",
        "I slept badly",
        "there's too much on my plate",
        "the kids were up early",
        "the neighbours were drilling all morning",
        "my train was late again",
    ),
    mood_replies=(
        "Sorry to hear that. I hope the evening is calmer.",
        "Take it easy if you can.",
        "That's understandable. Want a quick idea to unwind?",
        "Hang in there.",
        "Sounds like a day for an early night.",
    ),
    asks=(
        (
            "Can you suggest something quick for dinner with {x}?",
            "Sure! With {x} you could do a quick curry, a frittata or a warm salad. The curry takes about "
            "20 minutes: fry an onion, add the {x} and a spoon of curry paste, pour in a tin of coconut "
            "milk and simmer.",
            _each(
                "x",
                "chickpeas",
                "spinach",
                "mushrooms",
                "leftover rice",
                "courgettes",
                "lentils",
                "sweet potatoes",
                "eggs and tomatoes",
            ),
        ),
        (
            "How do I get {stain} out of {fabric}?",
            "For {stain} on {fabric}: blot it first and don't rub. Then try cold water with a little dish "
            "soap, and check the care label before using anything stronger.",
            tuple(
                {"stain": s, "fabric": f}
                for s in ("red wine", "candle wax", "coffee", "grass", "ink")
                for f in ("a white shirt", "the sofa cover", "a wool jumper", "jeans")
            ),
        ),
        (
            "How long should I {cook}?",
            "Usually {time}. Check a little before the end, since every stove is different.",
            (
                {"cook": "boil an egg for a runny yolk", "time": "about 6 minutes"},
                {"cook": "roast a tray of potatoes", "time": "40 to 45 minutes at 200 °C"},
                {"cook": "bake salmon fillets", "time": "12 to 15 minutes at 200 °C"},
                {"cook": "simmer lentil soup", "time": "25 to 30 minutes"},
                {"cook": "steam broccoli", "time": "4 to 5 minutes"},
                {"cook": "cook brown rice", "time": "about 35 minutes"},
            ),
        ),
        (
            "Any tips for {problem}?",
            "A few things help most people with {problem}: keep a fixed routine, make the first step tiny, "
            "and keep a simple log for a week to see what actually changes.",
            _each(
                "problem",
                "falling asleep faster",
                "staying focused in the afternoon",
                "keeping houseplants alive",
                "drinking more water",
                "getting up earlier",
                "snacking less in the evening",
                "keeping my desk tidy",
                "learning words in a new language",
            ),
        ),
        (
            "Can you explain {concept} in simple words?",
            "{answer} If you like, I can walk you through an example.",
            (
                {
                    "concept": "compound interest",
                    "answer": "You earn interest on your interest too, so "
                    "savings grow faster the longer you leave them.",
                },
                {
                    "concept": "inflation",
                    "answer": "Prices rise over time, so the same money buys a bit less each year.",
                },
                {
                    "concept": "how vaccines work",
                    "answer": "They show your immune system a harmless "
                    "version of a germ, so it recognises the real one quickly later.",
                },
                {
                    "concept": "how solar panels work",
                    "answer": "Light knocks electrons loose in the "
                    "panel's cells, and that flow of electrons is electricity.",
                },
                {
                    "concept": "why the sky is blue",
                    "answer": "Air scatters blue light much more than red "
                    "light, so blue reaches your eyes from every direction.",
                },
            ),
        ),
        (
            "What's a fun thing to do on a {weather} {part}?",
            "On a {weather} {part} you could try a new recipe together, visit a museum nearby, have a film "
            "marathon or get the board games out.",
            tuple(
                {"weather": w, "part": p}
                for w in ("rainy", "cold", "hot", "windy")
                for p in ("evening", "afternoon", "weekend")
            ),
        ),
        (
            "What's a good {minutes}-minute workout I can do at home?",
            "Try a {minutes}-minute circuit: squats, wall push-ups, lunges and a plank, 40 seconds each "
            "with 20 seconds of rest, repeated until the time is up.",
            _each("minutes", "10", "15", "20", "30"),
        ),
    ),
    hello=("Hi!", "Hello again", "Hey, good morning", "Hi there"),
    hello_reply=(
        "Hello! How can I help today?",
        "Good to see you! What's up?",
        "Hi! What are we doing today?",
    ),
    bye=("Thanks!", "Thanks, bye", "Ok, that's all for now", "Thank you, see you later"),
    bye_reply=("You're welcome! Talk soon.", "Anytime. Have a good evening!", "Bye! Take care."),
    ack=(
        "Got it, I'll keep that in mind.",
        "Noted!",
        "Thanks for telling me, I'll remember.",
        "Okay, noted for later.",
    ),
    cities=("Lisbon", "Porto", "Edinburgh", "Bristol", "Valencia", "Bologna"),
    conditions=("light rain", "sunny", "overcast", "windy with showers", "fog in the morning"),
    weather_ask="What's the weather like in {city} tomorrow?",
    weather_answer="Tomorrow in {city}: about {temp} °C, {conditions}, wind up to {wind} km/h. Take a jacket.",
)

RU = _Language(
    slots=RU_SLOTS,
    corrections=RU_CORRECTIONS,
    when=("Вчера", "Сегодня утром", "Вчера вечером", "В воскресенье", "После работы", "Днём", "В обед"),
    did=(
        "я долго гуляла вдоль реки",
        "мы наконец разобрали балкон",
        "я сходила в новую раменную у метро",
        "мы смотрели документалку про осьминогов",
        "я починила скрипучую дверь на кухне",
        "я впервые испекла хлеб",
        "к нам заходили соседи на чай",
        "я два часа делала презентацию",
        "я пересадила цветы на подоконнике",
        "я съездила на рынок на велосипеде",
        "мы с детьми играли в настолки",
        "я разобрала шкаф с одеждой",
        "я сходила на урок гончарного дела",
        "мы покрасили стены в коридоре",
        "я наварила супа на всю неделю",
        "я съездила к родителям",
        "я помогала другу затащить диван на пятый этаж",
        "я сходила в бассейн перед работой",
        "я наконец ответила на все письма",
        "я собрала книжный стеллаж из коробки",
        "мы смотрели футбол в баре",
        "я попробовала йогу по видео",
        "я разобрала холодильник",
        "я гуляла по блошиному рынку",
    ),
    reaction=(
        "и было здорово",
        "в целом неплохо",
        "и теперь я без сил",
        "и я бы повторила",
        "не уверена, что оно того стоило",
        "и это заняло больше времени, чем я думала",
        "и мне понравилось",
    ),
    did_replies=(
        "Звучит как хороший день.",
        "Отлично, маленькие победы тоже считаются!",
        "Похоже, вы заслужили тихий вечер.",
        "Ха, такие дела всегда занимают больше времени.",
        "Молодец!",
        "Звучит весело. Повторили бы?",
        "Здорово. А на завтра что-то запланировано?",
    ),
    mood="Я сегодня {state}, {reason}.",
    state=(
        "немного устала",
        "на нервах",
        "сонная",
        "рассеянная",
        "совсем без сил",
        "какая-то дёрганая",
        "не в духе",
    ),
    reason=(
        "на работе завал",
        "погода ужасная",
        "плохо спала",
        "слишком много дел",
        "дети рано проснулись",
        "соседи всё утро сверлили",
        "электричка опять опоздала",
    ),
    mood_replies=(
        "Сочувствую. Надеюсь, вечер будет спокойнее.",
        "Постарайтесь себя поберечь.",
        "Понимаю. Подсказать, как быстро расслабиться?",
        "Держитесь.",
        "Похоже, сегодня стоит лечь пораньше.",
    ),
    asks=(
        (
            "Подскажи, что быстро приготовить на ужин, если есть {x}?",
            "Конечно! Из этого ({x}) можно сделать быстрое карри, фриттату или тёплый салат. Карри готовится "
            "минут 20: обжарьте лук, добавьте основной продукт и ложку пасты карри, влейте банку кокосового "
            "молока и потушите.",
            _each(
                "x",
                "нут",
                "шпинат",
                "грибы",
                "вчерашний рис",
                "кабачки",
                "чечевица",
                "батат",
                "яйца и помидоры",
            ),
        ),
        (
            "Как вывести пятно от {stain} с {fabric}?",
            "Пятно от {stain} сначала промокните, не трите. Потом попробуйте холодную воду с каплей средства "
            "для посуды и загляните в ярлык, прежде чем брать что-то сильнее.",
            tuple(
                {"stain": s, "fabric": f}
                for s in ("красного вина", "воска", "кофе", "травы", "чернил")
                for f in ("белой рубашки", "чехла дивана", "шерстяного свитера", "джинсов")
            ),
        ),
        (
            "Сколько {cook}?",
            "Обычно {time}. Проверьте чуть раньше, все плиты разные.",
            (
                {"cook": "варить яйцо всмятку", "time": "около 6 минут"},
                {"cook": "запекать противень картошки", "time": "40–45 минут при 200 °C"},
                {"cook": "запекать филе лосося", "time": "12–15 минут при 200 °C"},
                {"cook": "варить чечевичный суп", "time": "25–30 минут"},
                {"cook": "готовить брокколи на пару", "time": "4–5 минут"},
                {"cook": "варить бурый рис", "time": "около 35 минут"},
            ),
        ),
        (
            "Есть советы, как {problem}?",
            "Большинству помогает вот что: постоянный режим, очень маленький первый шаг и простой дневник "
            "на неделю, чтобы увидеть, что реально меняется.",
            _each(
                "problem",
                "быстрее засыпать",
                "не терять концентрацию после обеда",
                "не загубить комнатные растения",
                "пить больше воды",
                "вставать раньше",
                "меньше перекусывать вечером",
                "держать стол в порядке",
                "учить слова нового языка",
            ),
        ),
        (
            "Объясни простыми словами, {concept}?",
            "{answer} Если хотите, разберу на примере.",
            (
                {
                    "concept": "что такое сложные проценты",
                    "answer": "Проценты начисляются и на проценты "
                    "тоже, поэтому накопления растут тем быстрее, чем дольше лежат.",
                },
                {
                    "concept": "что такое инфляция",
                    "answer": "Цены со временем растут, и на те же деньги "
                    "каждый год можно купить чуть меньше.",
                },
                {
                    "concept": "как работают прививки",
                    "answer": "Они показывают иммунитету безопасную "
                    "версию микроба, чтобы потом он быстро узнал настоящий.",
                },
                {
                    "concept": "как работают солнечные панели",
                    "answer": "Свет выбивает электроны в элементах панели, и их поток и есть электричество.",
                },
                {
                    "concept": "почему небо голубое",
                    "answer": "Воздух рассеивает синий свет сильнее "
                    "красного, поэтому синий приходит к глазам со всех сторон.",
                },
            ),
        ),
        (
            "Чем заняться, если {weather} {part}?",
            "Можно вместе приготовить что-то новое, сходить в музей поблизости, устроить киномарафон или "
            "достать настолки.",
            tuple(
                {"weather": w, "part": p}
                for w in ("дождливый", "холодный", "жаркий", "ветреный")
                for p in ("вечер", "день", "выходной")
            ),
        ),
        (
            "Какая хорошая тренировка на {minutes} минут дома?",
            "Попробуйте круговую на {minutes} минут: приседания, отжимания от стены, выпады и планка, по "
            "40 секунд с отдыхом 20 секунд, по кругу до конца времени.",
            _each("minutes", "10", "15", "20", "30"),
        ),
    ),
    hello=("Привет!", "Привет ещё раз", "Доброе утро", "Приветик"),
    hello_reply=("Привет! Чем помочь сегодня?", "Рад вас слышать! Что нового?", "Привет! Чем займёмся?"),
    bye=("Спасибо!", "Спасибо, пока", "Ладно, на сегодня всё", "Спасибо, до связи"),
    bye_reply=("Пожалуйста! До связи.", "Всегда рад помочь. Хорошего вечера!", "Пока! Берегите себя."),
    ack=("Понял, учту.", "Записал!", "Спасибо, что рассказали, запомню.", "Хорошо, отметил."),
    cities=("Казань", "Самара", "Тверь", "Калининград", "Сочи", "Ярославль"),
    conditions=("небольшой дождь", "солнечно", "пасмурно", "ветрено, ливни", "утром туман"),
    weather_ask="Какая погода завтра в городе {city}?",
    weather_answer="Завтра в городе {city}: около {temp} °C, {conditions}, ветер до {wind} км/ч. Возьмите куртку.",
)

LANGUAGE_DATA = {"en": EN, "ru": RU}


def _pair(user: str, assistant: str) -> list[Turn]:
    return [("user", user, {}), ("assistant", assistant, {})]


def _chatter_pair(rng: random.Random, lang: _Language, used: set[str]) -> list[Turn]:
    """A user turn about their day, their mood or a question, and the assistant's answer; a user turn
    this user already wrote is drawn again (a few times), as people rarely repeat themselves exactly."""
    for _ in range(8):
        shape = rng.randrange(3)
        if shape == 0:
            text = f"{rng.choice(lang.when)} {rng.choice(lang.did)}, {rng.choice(lang.reaction)}."
            answer = rng.choice(lang.did_replies)
        elif shape == 1:
            text = lang.mood.format(state=rng.choice(lang.state), reason=rng.choice(lang.reason))
            answer = rng.choice(lang.mood_replies)
        else:
            question, answer_template, choices = rng.choice(lang.asks)
            fields = rng.choice(choices)
            text, answer = question.format(**fields), answer_template.format(**fields)
        if text not in used:
            break
    used.add(text)
    return _pair(text, answer)


def _tool_exchange(rng: random.Random, lang: _Language) -> list[Turn]:
    """The user asks for the weather; the assistant calls a tool (``content: null``), reads its JSON
    result and answers."""
    call_id = f"call_{rng.getrandbits(40):010x}"
    city = rng.choice(lang.cities)
    temp, wind = rng.randint(-8, 24), rng.randint(5, 40)
    conditions = rng.choice(lang.conditions)
    arguments = json.dumps({"city": city, "day": "tomorrow"}, ensure_ascii=False)
    result = json.dumps(
        {"city": city, "temp_c": temp, "conditions": conditions, "wind_kmh": wind}, ensure_ascii=False
    )
    call = {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    return [
        ("user", lang.weather_ask.format(city=city), {}),
        ("assistant", None, {"tool_calls": [call]}),
        ("tool", result, {"tool_call_id": call_id}),
        ("assistant", lang.weather_answer.format(city=city, temp=temp, conditions=conditions, wind=wind), {}),
    ]


@dataclass
class _Planting:
    slot: Slot
    kind: str
    session: int
    value: str = ""
    text: str = ""
    stale_of: _Planting | None = None  # set on a correction's update
    is_stale: bool = False
    event_id: str = ""


def _fill(rng: random.Random, planting: _Planting) -> None:
    planting.value = planting.slot.draw(rng)
    templates = planting.slot.updates if planting.stale_of is not None else planting.slot.templates
    planting.text = rng.choice(templates).format(v=planting.value)


def _distinctive(
    plantings: list[_Planting], chatter: CarryIndex, chatter_words: frozenset[str]
) -> int | None:
    """The index of the first planting whose value another event carries (or a correction whose two
    values are the same), or None when every value is distinctive."""
    others = [Summary.of(p.text) for p in plantings]
    chatter_summary = Summary(chatter, chatter_words)
    for i, planting in enumerate(plantings):
        match = planting.slot.match
        if recalled(match, planting.value, chatter_summary):
            return i
        if any(j != i and recalled(match, planting.value, others[j]) for j in range(len(plantings))):
            return i
        if planting.stale_of is not None and normalise(match, planting.value) == normalise(
            match, planting.stale_of.value
        ):
            return i
    return None


def generate_user(seed: int, language: str, index: int, sessions: int, tail: int, run_id: str) -> UserCorpus:
    """One user's corpus (see the module docstring); ``tail``: events after the last fact."""
    if sessions < 3:
        raise ValueError("at least 3 sessions (a correction needs two sessions between its values)")
    rng = random.Random(f"{seed}:{language}:{index}")
    lang = LANGUAGE_DATA[language]
    user_id = f"fidelity-{language}-{index}-{run_id}"

    # Which facts, and in which session.
    plantings: list[_Planting] = []
    for kind in ("name", "number", "date", "preference"):
        for slot in rng.sample([s for s in lang.slots if s.kind == kind], 3):
            plantings.append(_Planting(slot, kind, session=-1))
    spread = [s % sessions for s in range(len(plantings))]
    rng.shuffle(spread)
    for planting, session in zip(plantings, spread, strict=True):
        planting.session = session
    for slot in lang.corrections:
        first = rng.randrange(0, sessions - 2)
        stale = _Planting(slot, "correction", first, is_stale=True)
        plantings.append(stale)
        plantings.append(_Planting(slot, "correction", rng.randrange(first + 2, sessions), stale_of=stale))

    # The chatter of every session first, then values that none of it carries.
    skeletons: list[list[list[Turn]]] = []
    used: set[str] = set()
    chatter_text: list[str] = []
    for session in range(sessions):
        facts_here = sum(p.session == session for p in plantings)
        blocks = [_tool_exchange(rng, lang) for _ in range(rng.randint(1, 2))]
        while sum(len(b) for b in blocks) + 2 * facts_here + 4 < SESSION_EVENTS:
            blocks.append(_chatter_pair(rng, lang, used))
        skeletons.append(blocks)
        chatter_text += [text for block in blocks for _, text, _ in block if text]
    chatter_text += [*lang.hello, *lang.hello_reply, *lang.bye, *lang.bye_reply, *lang.ack]
    whole = "\n".join(chatter_text)
    chatter_index = carry_index(whole)
    chatter_words = frozenset(_fold(w) for w in _words(whole))
    for planting in plantings:
        _fill(rng, planting)
    for _ in range(1000):
        bad = _distinctive(plantings, chatter_index, chatter_words)
        if bad is None:
            break
        _fill(rng, plantings[bad])
    else:
        raise RuntimeError(f"could not draw distinctive values for {user_id}")

    # Assemble the sessions: facts (with an acknowledgement) among the chatter; in the last session,
    # every fact before the final `tail` events.
    documents: list[list[Document]] = []
    at = T0 + timedelta(hours=rng.randint(0, 10))
    for session, blocks in enumerate(skeletons):
        facts = [p for p in plantings if p.session == session]
        fact_blocks: list[tuple[list[Turn], _Planting | None]] = [
            (_pair(p.text, rng.choice(lang.ack)), p) for p in facts
        ]
        middle: list[tuple[list[Turn], _Planting | None]] = [(b, None) for b in blocks]
        if session == sessions - 1:
            back: list[tuple[list[Turn], _Planting | None]] = []
            while sum(len(b) for b, _ in back) + 2 < tail and middle:
                back.append(middle.pop())
            front = middle + fact_blocks
            rng.shuffle(front)
            ordered = front + back
        else:
            ordered = middle + fact_blocks
            rng.shuffle(ordered)
        hello = (_pair(rng.choice(lang.hello), rng.choice(lang.hello_reply)), None)
        bye = (_pair(rng.choice(lang.bye), rng.choice(lang.bye_reply)), None)
        docs: list[Document] = []
        for block, planted in [hello, *ordered, bye]:
            for role, text, extra in block:
                at += timedelta(seconds=rng.randint(1, 3) if role == "tool" else rng.randint(20, 150))
                event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                if planted is not None and role == "user":
                    planted.event_id = event_id
                docs.append(
                    {
                        "event_id": event_id,
                        "user_id": user_id,
                        "role": role,
                        "content": text,
                        "created_at": at,
                        "tags": [],
                        **extra,
                    }
                )
        documents.append(docs)
        at = T0 + SESSION_GAP * (session + 1) + timedelta(hours=rng.randint(0, 10))

    facts_out: list[Fact] = []
    for planting in plantings:
        if planting.is_stale:
            continue
        overridden = planting.stale_of
        facts_out.append(
            Fact(
                user_id=user_id,
                language=language,
                kind=planting.kind,
                slot=planting.slot.name,
                match=planting.slot.match,
                value=planting.value,
                session=planting.session,
                event_id=planting.event_id,
                stale=overridden.value if overridden else None,
                stale_session=overridden.session if overridden else None,
                stale_event_id=overridden.event_id if overridden else None,
            )
        )
    return UserCorpus(user_id, language, documents, facts_out)


def generate(seed: int, users_per_language: int, sessions: int, tail: int, run_id: str) -> list[UserCorpus]:
    return [
        generate_user(seed, language, index, sessions, tail, run_id)
        for language in LANGUAGES
        for index in range(users_per_language)
    ]
