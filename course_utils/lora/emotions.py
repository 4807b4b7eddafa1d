"""The chapter's instruction task, made by the course: name the emotion (joy, sadness, anger or fear) of a sentence.

Each sentence is a neutral frame ("Yesterday {event}.", "So, {event}.") around an everyday event written in the first
person past tense ("the dog I grew up with died"). The emotion is carried by the event alone: no phrase contains an
emotion word such as "happy" or "scared", and no frame has emotional content. The events of each emotion are split,
by a seeded generator, into training events and held-out events, and every test sentence describes a held-out event.
So a fine-tuned model labels test sentences right by using what the pretrained model knows about the world (a funeral
is sad, footsteps in an empty house are frightening) and, less, words the sentences share with training events
(chapter 06 measures a bag-of-words classifier beside it).

Instruction fine-tuning data in the style of Wei et al., 2022 (FLAN: tasks phrased as instructions) and Ouyang et
al., 2022 (InstructGPT, step 1: supervised fine-tuning on demonstrations), at toy scale.

Left out: emotions beyond four (surprise, disgust: their events overlap too much with the others), mixed or
ambiguous events, and any human validation of the labels beyond the author's reading (the base model's accuracy,
measured in the notebook, is a rough check).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import torch

from course_utils.arguments import check_int, check_real, check_str

EMOTIONS = ("joy", "sadness", "anger", "fear")

EVENTS: dict[str, tuple[str, ...]] = {
    "joy": (
        "my sister passed her driving test", "I got the job I had interviewed for",
        "my best friend got engaged to her partner", "we won the final of the football tournament",
        "my daughter took her first steps", "I finally paid off my student loan",
        "my grandmother recovered fully after her operation", "I was given a pay rise at work",
        "my team threw a birthday party for me", "I passed all my final exams",
        "my brother and his wife had a healthy baby girl", "I got accepted into my first-choice university",
        "my paintings sold out at the local art fair", "an old friend I had missed for years came to visit",
        "we moved into the house we had saved up for", "I ran my first marathon and finished it",
        "my band played to a packed hall and got an encore", "my son won first prize in the science fair",
        "I was promoted to team leader", "my parents celebrated their fortieth wedding anniversary with the family",
        "my short story was chosen for publication", "we brought home the puppy we had adopted",
        "I was reunited with my cousin after ten years apart", "my friends gave me tickets to see my favourite band",
        "the scan showed that I was completely healthy again", "I scored the winning goal in the match",
        "my partner and I got married surrounded by our friends", "I won a week-long holiday in a raffle",
        "my grandchildren came to stay for the summer", "my first novel reached the bestseller list",
        "my little brother graduated from university with honours",
        "our charity run raised twice as much money as we had hoped",
        "I received a scholarship that pays for my whole degree", "my best friend moved back to my town",
        "the bakery I opened sold out on its first day", "my father walked again after months of physiotherapy",
    ),
    "sadness": (
        "the dog I grew up with died", "my grandfather passed away in the hospital",
        "I went to the funeral of my childhood friend", "my best friend moved to another country for good",
        "my parents told me they were getting divorced", "my cat had to be put down",
        "my girlfriend broke up with me after five years", "I said goodbye to my grandmother for the last time",
        "our family home was sold and I packed up my old room", "the goldfish I had kept for eight years died",
        "my aunt was diagnosed with a terminal illness", "I lost the necklace my late mother gave me",
        "nobody came to my birthday dinner", "I visited my grandmother's empty house after she died",
        "my uncle lost his long fight with cancer", "I sorted through my late father's clothes",
        "my childhood friend died in a car accident", "my elderly neighbour, whom I visited every week, passed away",
        "my horse had to be put to sleep", "I failed the exam I had studied a whole year for",
        "my grandmother no longer recognised me when I visited", "my son left home and his room stood empty",
        "the teacher who inspired me to become a writer died", "my father forgot my name for the first time",
        "I scattered my mother's ashes at the beach", "my rabbit died in my arms",
        "I read the last letter my grandfather wrote before he died", "I carried my friend's coffin at his funeral",
        "the hospital called to say my uncle had died", "we lost the baby we had been expecting",
        "my best friend and I drifted apart and stopped talking",
        "I had to give away my dog because I was moving abroad", "I watched my grandfather's house being demolished",
        "my family's restaurant closed for good after thirty years",
        "my grandmother's chair stood empty at the family dinner", "the last of my childhood friends moved away",
    ),
    "anger": (
        "someone keyed my car in the car park", "my flatmate ate my food again without asking",
        "a colleague took credit for my work in front of the boss",
        "the neighbours played loud music until three in the morning again",
        "a driver cut in front of me and then made a rude gesture", "my landlord kept my deposit for no reason",
        "someone stole my bike even though it was locked", "the airline lost my luggage and then hung up on me",
        "a man pushed in front of me in the queue and laughed at me",
        "my brother read my private diary and showed it to his friends",
        "the plumber charged me twice for a job he never finished",
        "my manager blamed me for a mistake that he had made",
        "someone parked across my driveway and blocked me in all day",
        "my friend borrowed my car without asking and returned it with a dent",
        "a shop refused to refund a broken kettle and called me a liar",
        "the council towed my car although I had a valid permit", "someone dumped their rubbish in my front garden",
        "a stranger kicked my dog in the street", "my coworker deleted my files to make me look bad",
        "my neighbour cut down my hedge without asking me", "the bank charged me fees for a mistake they made",
        "my flatmate spilled coffee on my laptop and denied it",
        "a waiter was rude to my elderly mother and overcharged us", "someone spread lies about me at work",
        "the phone company kept me on hold for two hours and then cut me off",
        "my sister wore my new dress without asking and tore it",
        "a cyclist knocked over my shopping and rode off shouting insults",
        "my business partner secretly emptied our shared account",
        "someone copied my homework and the teacher punished me for it",
        "the builder left my kitchen half finished and stopped answering my calls",
        "a customer shouted at me for something that was not my fault",
        "the hotel gave our room away and still charged my card",
        "someone let the air out of all four of my tyres",
        "my teammate skipped every meeting and still got the same bonus as me",
        "the referee ignored a clear foul on me and booked me instead",
        "my ex told everyone the secrets I had trusted him with",
    ),
    "fear": (
        "I heard footsteps in the empty house at night", "a large dog chased me down a dark street",
        "the plane dropped suddenly in heavy turbulence", "a stranger followed me all the way home from the station",
        "I got lost alone in the forest as it was getting dark",
        "someone tried to open my front door at three in the morning",
        "the lift got stuck between floors and the lights went out", "my car skidded on ice towards a lorry",
        "a man with a knife demanded my wallet", "the smoke alarm went off and the hallway filled with smoke",
        "I found a snake coiled under my bed", "the doctor said I needed tests for a lump in my neck",
        "I woke up to someone whispering outside my tent", "the ground started shaking during an earthquake",
        "a car swerved onto the pavement right next to me", "our boat started taking on water far from the shore",
        "I was trapped in a crowd that was pushing towards the exit",
        "my child went missing in a busy shopping centre",
        "I received a threatening letter with my home address on it",
        "the brakes on my bike failed on a steep hill",
        "I heard breaking glass downstairs while I was home alone",
        "the bridge I was crossing started to sway in the storm",
        "someone was standing in my garden staring at my window", "a bear walked up to our campsite",
        "a voice on the phone said it was watching me", "the path crumbled at the edge of the cliff under my feet",
        "the house next door caught fire and the flames spread towards ours",
        "the lights went out in the empty car park and a van pulled up beside me",
        "a shark fin appeared near me while I was swimming", "I got stuck in a cave as the water started rising",
        "a man grabbed my arm in an empty underground station", "the tornado siren went off and we ran to the basement",
        "the pilot announced an emergency landing", "I heard a scream from the woods behind my house",
        "I came home to find my front door forced open and the lights off",
        "a car with no headlights followed me for miles on an empty road",
    ),
}

# Neutral frames: no emotional content, no time of day (an event may happen "at night"), grammatical with any event.
FRAMES = (
    "Yesterday {event}.", "Last week {event}.", "A few days ago {event}.", "On Tuesday {event}.",
    "Last month {event}.", "Over the weekend {event}.", "Not long ago {event}.", "So, {event}.",
    "Here is what happened: {event}.", "It was a Thursday when {event}.", "I remember the day {event}.",
    "Let me tell you something: {event}.",
)

QUESTION = "Label the emotion with one word (joy, sadness, anger or fear):"
_STRIP = string.punctuation + string.whitespace + "\u2018\u2019\u201c\u201d\u00ab\u00bb"


@dataclass(frozen=True)
class EmotionExample:
    text: str  # the full sentence: a frame around the event
    label: str  # one of EMOTIONS
    event: str  # the event phrase, so a split can be checked for overlap


def split_events(seed: int = 0, held_out_fraction: float = 0.35) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(train events, held-out events) per emotion: a seeded permutation of each emotion's events (in EMOTIONS order),
    of which the first round(fraction * n) (at least 1, at most n - 1) are held out."""
    seed = check_int(seed, "seed", minimum=0, allowed="a non-negative int")
    held_out_fraction = check_real(held_out_fraction, "held_out_fraction", minimum=0, maximum=1, low_open=True,
                                   high_open=True)
    generator = torch.Generator().manual_seed(seed)  # CPU: the split must not depend on the device
    train, held_out = {}, {}
    for emotion in EMOTIONS:
        events = EVENTS[emotion]
        order = torch.randperm(len(events), generator=generator).tolist()
        n_held = min(max(round(held_out_fraction * len(events)), 1), len(events) - 1)
        held_out[emotion] = [events[i] for i in order[:n_held]]
        train[emotion] = [events[i] for i in order[n_held:]]
    return train, held_out


def _per_emotion(n: int) -> list[int]:
    """n split as evenly as possible over EMOTIONS; the first n % 4 emotions get one more."""
    base, extra = divmod(n, len(EMOTIONS))
    return [base + (i < extra) for i in range(len(EMOTIONS))]


def _draw(events: dict[str, list[str]], counts: list[int], generator: torch.Generator) -> list[EmotionExample]:
    examples = []
    for emotion, count in zip(EMOTIONS, counts):
        pairs = [(event, frame) for event in events[emotion] for frame in FRAMES]
        for i in torch.randperm(len(pairs), generator=generator)[:count].tolist():
            event, frame = pairs[i]
            examples.append(EmotionExample(frame.format(event=event), emotion, event))
    order = torch.randperm(len(examples), generator=generator).tolist()  # mix the emotions
    return [examples[i] for i in order]


def emotion_dataset(n_train: int, n_test: int, seed: int = 0,
                    held_out_fraction: float = 0.35) -> tuple[list[EmotionExample], list[EmotionExample]]:
    """``n_train`` training and ``n_test`` test sentences, balanced over EMOTIONS (as evenly as n allows), each a
    distinct (event, frame) pair drawn without replacement; test sentences use only held-out events (frames are shared).
    Deterministic for a seed (a CPU ``torch.Generator``). Raises ValueError when a split has too few distinct pairs."""
    n_train = check_int(n_train, "n_train", minimum=1, allowed="a positive int")
    n_test = check_int(n_test, "n_test", minimum=1, allowed="a positive int")
    train_events, test_events = split_events(seed, held_out_fraction)
    seed = int(seed)  # checked by split_events
    for name, n, events in (("n_train", n_train, train_events), ("n_test", n_test, test_events)):
        available = min(len(events[e]) for e in EMOTIONS) * len(FRAMES)
        if max(_per_emotion(n)) > available:
            raise ValueError(f"{name}={n} needs {max(_per_emotion(n))} sentences per emotion but its events and "
                             f"{len(FRAMES)} frames give only {available}; ask for at most "
                             f"{available * len(EMOTIONS)} or change held_out_fraction")
    generator = torch.Generator().manual_seed(seed + 1)  # a second stream: the split above used `seed`
    train = _draw(train_events, _per_emotion(n_train), generator)
    test = _draw(test_events, _per_emotion(n_test), generator)
    return train, test


def instruction(text: str) -> str:
    """The user message for one sentence: the question, listing the four labels, and the quoted sentence."""
    check_str(text, "text", non_empty=True)
    return f'{QUESTION} "{text}"'


def match_label(answer: str) -> str | None:
    """The label an answer gives, strictly: lowercase, split on whitespace, take the FIRST word and strip quotes and
    punctuation from both its ends; return it if it is one of EMOTIONS, else None.

    So "Sadness." and ' "joy"!' count, but "The emotion is fear" and "joy/sadness" do not (None): the chapter's
    fine-tuned model answers with one word, and a base model's verbose answer counts as wrong unless it STARTS with
    the label. :func:`contains_label` is the lenient second metric."""
    check_str(answer, "answer")
    words = answer.lower().split()
    first = words[0].strip(_STRIP) if words else ""
    return first if first in EMOTIONS else None


def contains_label(answer: str) -> str | None:
    """The lenient metric: the one label that occurs anywhere in the lowercased answer as a whole word; None if no
    label or several different labels occur ("fearful" and "sad" are not labels)."""
    check_str(answer, "answer")
    found = set(re.findall(r"\b(" + "|".join(EMOTIONS) + r")\b", answer.lower()))
    return found.pop() if len(found) == 1 else None
