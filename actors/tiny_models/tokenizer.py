"""A byte-level BPE tokenizer built without training, for the tiny random checkpoints.

The 256 byte symbols plus merge chains that make a fixed list of common English words single
tokens (so questions cost about as many tokens as with a real tokenizer, which matters for
prefix-sharing benchmarks). Each word's chain is appended after all earlier merges, so no later
chain can split an earlier word. Every family uses it with its own special tokens and template.
"""
from __future__ import annotations

from tokenizers import pre_tokenizers
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

# Answer words first: their chains get the lowest ranks, so they are single tokens in every
# context (bare, capitalised, after a space).
_ANSWER_WORDS = "yes no"
_COMMON_WORDS = """
the a an of in on at to for from by with without and or not but if as is are was were be been
being does do did has have had can could should would will it its this that these those there
their they them he she his her you your we our i me my what which who whom whose when where why
how all any some most many much more less few each every other another such same only very too
so than then also just well good bad high low large small big little long short new old young
image images video videos picture pictures photo frame frames scene shot view camera text prompt
meet meets met requirement requirements stated state completely complete fail fails failure
composition aesthetically aesthetic pleasing beautiful obvious obviously flaw flaws clear clearly
natural naturally realistic real reality quality detail details detailed sharp blurry blur noise
noisy artifact artifacts distortion distorted deformed color colors colour lighting light bright
dark shadow shadows contrast subject subjects background foreground main object objects person
people human humans man woman men women child face faces hand hands body bodies finger fingers
eye eyes animal animals cat dog bird horse car tree trees water sky sun rain snow street city room
house road mountain river sea beach forest night day morning evening motion movement moving move
moves stable stability smooth consistent consistency physics physical law laws world look looks
appear appears seem seems safe harmful content emotion emotional positive negative style overall
cinematic slow fast close up down over under into through while between left right top bottom
front back side time change changes shape size position correct accurate whole part parts walking
running sitting standing playing piano sunlit red blue green yellow white black gold golden
system user assistant helpful answer question describe following given please
"""


def _bpe_tokens(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Split `word` the way a BPE model does: always merge the lowest-ranked pair, leftmost first."""
    parts = list(word)
    while len(parts) > 1:
        pairs = [(ranks[pair], i) for i, pair in enumerate(zip(parts, parts[1:])) if pair in ranks]
        if not pairs:
            break
        best = min(pairs)[1]
        parts[best:best + 2] = [parts[best] + parts[best + 1]]
    return parts


def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    space = "\u0120"  # byte-level BPE's symbol for a leading space
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    words = [w for base in (_ANSWER_WORDS + " " + _COMMON_WORDS).split()
             for w in (base, base.capitalize(), space + base, space + base.capitalize())]
    for word in dict.fromkeys(words):
        parts = _bpe_tokens(word, ranks)
        while len(parts) > 1:  # chain the current pieces left to right into one token
            pair = (parts[0], parts[1])
            if pair not in ranks:  # an existing merge would apply here anyway
                ranks[pair] = len(merges)
                merges.append(pair)
                vocab.setdefault(pair[0] + pair[1], len(vocab))
            parts[:2] = [pair[0] + pair[1]]
    return vocab, merges


def build_bpe_tokenizer(special_tokens: tuple[str, ...], chat_template: str, *, eos: str, pad: str,
                        bos: str | None = None, named_tokens: dict[str, str] | None = None) -> Qwen2Tokenizer:
    """The word-level BPE plus `special_tokens` (single, never split) and `chat_template`.

    `named_tokens` become attributes of the tokenizer (`tokenizer.boi_token`), as some processors
    read them; they are saved in tokenizer_config.json as `extra_special_tokens`. No BOS is added
    when encoding: templates that want one write it themselves.
    """
    vocab, merges = _vocab_and_merges()
    for token in special_tokens:
        vocab.setdefault(token, len(vocab))
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, eos_token=eos, pad_token=pad, bos_token=bos,
        unk_token=None, extra_special_tokens=dict(named_tokens or {}), model_max_length=32768,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens)})
    tokenizer.chat_template = chat_template
    return tokenizer
