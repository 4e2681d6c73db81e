"""Text preprocessing applied identically at training time and at inference time.

The trainer saves a ``Preprocessing`` with the model and the runtime rebuilds it from the
model file, so a tweet is turned into tokens the same way in both places. It lives in
``batch/`` because the runtime must not import torch or transformers.

Why these steps: the packaged MiniLM vocabulary maps every emoji to ``[UNK]``, yet emoji
carry much of the emotion in tweets, so ``emoji="words"`` spells them out with their
Unicode names ("face with tears of joy"). User mentions and URLs are noise whose exact
value the model cannot learn from, so they can be replaced by one placeholder each.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Dict, Iterable, List

from mlbert.errors import ModelFileError, UsageError

EMOJI_MODES = ("keep", "words", "remove")
MENTION_MODES = ("keep", "token", "remove")
URL_MODES = ("keep", "token", "remove")

MENTION_TOKEN = "@user"
URL_TOKEN = "http"

# Code points that render as emoji. Modifiers and joiners are matched separately and
# dropped, so "👍🏽" becomes "thumbs up sign" and a ZWJ family becomes its members' names.
_EMOJI_CLASS = (
    "\U0001F000-\U0001F0FF"  # mahjong, domino, playing cards
    "\U0001F100-\U0001F1FF"  # enclosed alphanumerics, regional indicators (flags)
    "\U0001F200-\U0001F2FF"  # enclosed ideographic supplement
    "\U0001F300-\U0001F5FF"  # symbols and pictographs
    "\U0001F600-\U0001F64F"  # emoticons
    "\U0001F680-\U0001F6FF"  # transport and map
    "\U0001F700-\U0001F77F"  # alchemical
    "\U0001F780-\U0001F7FF"  # geometric shapes extended
    "\U0001F800-\U0001F8FF"  # supplemental arrows-c
    "\U0001F900-\U0001F9FF"  # supplemental symbols and pictographs
    "\U0001FA00-\U0001FAFF"  # chess, symbols and pictographs extended-a
    "\u2600-\u27BF"  # miscellaneous symbols, dingbats (☀ ☺ ❤ ✨)
    "\u2300-\u23FF"  # miscellaneous technical (⌚ ⏰)
    "\u2B00-\u2BFF"  # arrows and stars (⭐ ⬛)
    "\u3030\u303D\u3297\u3299"
)
_EMOJI_RE = re.compile(f"[{_EMOJI_CLASS}]")
# Skin tones, variation selectors, zero-width joiner, combining enclosing keycap, tags.
_EMOJI_MODIFIERS_RE = re.compile("[\U0001F3FB-\U0001F3FF\uFE0E\uFE0F\u200D\u20E3\U000E0020-\U000E007F]")
_MENTION_RE = re.compile(r"(?<![\w@])@\w{1,30}")
_URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
_SPACES_RE = re.compile(r"[ \t]{2,}")


@lru_cache(maxsize=4096)
def _emoji_words(char: str) -> str:
    try:
        return " " + unicodedata.name(char).lower() + " "
    except ValueError:  # unassigned in this Python's Unicode database
        return " "


def _emoji_to_words(match: "re.Match[str]") -> str:
    return _emoji_words(match.group(0))


@dataclass(frozen=True)
class Preprocessing:
    """Settings that travel with the model; ``apply`` is the single implementation."""

    emoji: str = "keep"
    mentions: str = "keep"
    urls: str = "keep"
    # Names are taken from Python's Unicode database; recorded so a runtime on another
    # Python can tell when emoji names could differ.
    unicode_version: str = field(default=unicodedata.unidata_version)

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("emoji", self.emoji, EMOJI_MODES),
            ("mentions", self.mentions, MENTION_MODES),
            ("urls", self.urls, URL_MODES),
        ):
            if value not in allowed:
                raise UsageError(f"preprocessing {name}={value!r}: use one of {', '.join(allowed)}")

    @property
    def is_identity(self) -> bool:
        return self.emoji == "keep" and self.mentions == "keep" and self.urls == "keep"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Preprocessing":
        if not isinstance(data, dict):
            raise ModelFileError("preprocessing settings must be a JSON object")
        known = {k: data[k] for k in ("emoji", "mentions", "urls", "unicode_version") if k in data}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ModelFileError(
                f"preprocessing settings name steps this version of mlb does not know: {', '.join(unknown)}"
            )
        try:
            return cls(**known)
        except UsageError as exc:
            raise ModelFileError(str(exc)) from None

    def apply_one(self, text: str) -> str:
        if self.is_identity:
            return text
        if self.urls != "keep":
            text = _URL_RE.sub(URL_TOKEN if self.urls == "token" else " ", text)
        if self.mentions != "keep":
            text = _MENTION_RE.sub(MENTION_TOKEN if self.mentions == "token" else " ", text)
        if self.emoji != "keep":
            text = _EMOJI_MODIFIERS_RE.sub("", text)
            text = _EMOJI_RE.sub(_emoji_to_words if self.emoji == "words" else " ", text)
            text = _SPACES_RE.sub(" ", text).strip()
        return text

    def apply(self, texts: Iterable[str]) -> List[str]:
        if self.is_identity:
            return list(texts)
        return [self.apply_one(t) for t in texts]
