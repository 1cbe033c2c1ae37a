"""The ChatML-style chat template and the tokenizer that carries its special tokens.

A conversation is a list of messages ``{role, content}`` with role ``system``, ``user`` or
``assistant``. Each message renders as

    <|im_start|>{role}\n{content}<|im_end|>\n

(ChatML, as used by Qwen and SmolLM). ``<|im_start|>`` and ``<|im_end|>`` are special tokens
added to the tokenizer; ``<|im_end|>`` is the end token that closes every assistant answer.
The role line and the content are encoded separately and the special ids are inserted
between them, so a literal ``<|im_end|>`` inside a message stays ordinary text (never the
end id), and :func:`parse` of the decoded ids gives the messages back exactly (byte-level
tokenizers, contents without the marker strings).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer

from components.tasks.text.tokenizer import EOS, TextTokenizer

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    role: str
    content: str


class ChatTokenizer(TextTokenizer):
    """A :class:`TextTokenizer` whose specials are ``eos``, ``pad``, ``mask`` (the diffusion
    mask, ``mask_id``), ``<|im_start|>`` and ``<|im_end|>`` (``end_id``). Specials the tokenizer
    already has keep their ids (a BERT or ModernBERT tokenizer's own ``[MASK]`` and ``[PAD]``;
    pass ``mask="<mask>"``, ``pad="<pad>"`` for RoBERTa's), the others are appended."""

    def __init__(self, tokenizer: Tokenizer, eos: str = EOS, *, pad: str = "[PAD]", mask: str = "[MASK]"):
        tokenizer.add_special_tokens([eos, pad, mask, IM_START, IM_END])
        tokenizer.encode_special_tokens = True
        self.tokenizer = tokenizer
        self.eos, self.pad, self.mask = eos, pad, mask
        ids = [tokenizer.token_to_id(t) for t in (eos, pad, mask, IM_START, IM_END)]
        self.eos_id, self.pad_id, self.mask_id, self.start_id, self.end_id = ids
        self.vocab_size = max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1
        self.fingerprint = hashlib.sha256(tokenizer.to_str().encode()).hexdigest()

    @classmethod
    def wrap(cls, base: TextTokenizer, *, pad: str = "[PAD]", mask: str = "[MASK]") -> "ChatTokenizer":
        """The chat tokenizer over a copy of ``base``'s underlying tokenizer."""
        return cls(Tokenizer.from_str(base.to_str()), base.eos, pad=pad, mask=mask)

    def encode_texts(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, no specials added."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def render_ids(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` with the template markers kept and pad/mask/eos dropped."""
        drop = {self.pad_id, self.mask_id, self.eos_id}
        return self.tokenizer.decode([i for i in ids if i not in drop], skip_special_tokens=False)


def header(role: str) -> str:
    """The text between ``<|im_start|>`` and the content."""
    return f"{role}\n"


def encode_message(tokenizer: ChatTokenizer, message: Message, encoded: dict[str, list[int]]) -> tuple[list[int], list[int]]:
    """(head, body) ids of one message: head = ``<|im_start|>{role}\\n``; body = content ids then
    ``<|im_end|>`` then ``\\n``. ``encoded`` maps texts to their ids (see :func:`encode_all`)."""
    head = [tokenizer.start_id, *encoded[header(message.role)]]
    body = [*encoded[message.content], tokenizer.end_id, *encoded["\n"]]
    return head, body


def encode_all(tokenizer: ChatTokenizer, conversations: Sequence[Sequence[Message]]) -> dict[str, list[int]]:
    """Ids of every distinct text a batch of conversations needs (contents, role lines, "\\n"),
    encoded in one batch call."""
    texts = {"\n", *(header(role) for role in ROLES)}
    texts.update(m.content for conversation in conversations for m in conversation)
    ordered = sorted(texts)
    return dict(zip(ordered, tokenizer.encode_texts(ordered)))


def encode_conversation(tokenizer: ChatTokenizer, conversation: Sequence[Message]) -> list[int]:
    """Ids of the whole rendered conversation."""
    encoded = encode_all(tokenizer, [conversation])
    ids: list[int] = []
    for message in conversation:
        head, body = encode_message(tokenizer, message, encoded)
        ids += head + body
    return ids


def render(conversation: Sequence[Message]) -> str:
    """The template text of a conversation."""
    return "".join(f"{IM_START}{header(m.role)}{m.content}{IM_END}\n" for m in conversation)


_MESSAGE = re.compile(re.escape(IM_START) + r"(system|user|assistant)\n(.*?)" + re.escape(IM_END) + r"\n", re.S)


def parse(text: str) -> list[Message]:
    """Messages of a rendered conversation (the inverse of :func:`render`); ValueError naming
    the offset of the first text that is not a message."""
    messages, offset = [], 0
    while offset < len(text):
        match = _MESSAGE.match(text, offset)
        if match is None:
            raise ValueError(f"not a template message at offset {offset}: {text[offset:offset + 40]!r}")
        messages.append(Message(match.group(1), match.group(2)))
        offset = match.end()
    return messages
