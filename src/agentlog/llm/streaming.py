"""Answer text as it is written: the sink a writer streams into, and the models that can stream.

A model that streams (OpenAI-compatible `stream: true`, Ollama NDJSON) hands each piece of text to a
`TextSink` as it arrives and still returns the whole `Completion`; a model that cannot is asked as
usual and its text written in one piece. The sink is best-effort by design: the recorded answer
(FinalAnswerSynthesized) is the truth, the stream only shows it sooner. When a writer starts over
(a retry, a fallback to another provider or to the template) it calls `restart()` first, so that a
reader replaces what it has shown instead of appending to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from agentlog.llm.base import ChatMessage, ChatModel, Completion

CHUNKS = 4  # pieces an answer written all at once is streamed in, so every answer takes the same path


class TextSink(Protocol):
    def write(self, text: str) -> None:
        """One more piece of the text, appended to what was written since the last restart."""

    def restart(self) -> None:
        """Discard what was written: the text starts over."""


class NullSink:
    """A sink for callers that want the text only at the end."""

    def write(self, text: str) -> None:
        pass

    def restart(self) -> None:
        pass


class TrackingSink:
    """Passes writes on and remembers whether any were made, so that a retry knows to restart."""

    def __init__(self, sink: TextSink) -> None:
        self.sink = sink
        self.wrote = False

    def write(self, text: str) -> None:
        if text:
            self.wrote = True
            self.sink.write(text)

    def restart(self) -> None:
        if self.wrote:
            self.wrote = False
            self.sink.restart()


@runtime_checkable
class StreamingChatModel(Protocol):
    name: str

    def complete(self, messages: Sequence[ChatMessage], *, json_schema: Mapping[str, Any] | None = None,
                 temperature: float = 0.0, max_tokens: int = 512) -> Completion: ...

    def stream(self, messages: Sequence[ChatMessage], sink: TextSink, *, temperature: float = 0.0,
               max_tokens: int = 512) -> Completion: ...


def stream_completion(model: ChatModel, messages: Sequence[ChatMessage], sink: TextSink, *,
                      temperature: float = 0.0, max_tokens: int = 512) -> Completion:
    """The model's reply, streamed into `sink` if the model can stream, else written in one piece."""
    if isinstance(model, StreamingChatModel):
        return model.stream(messages, sink, temperature=temperature, max_tokens=max_tokens)
    completion = model.complete(messages, temperature=temperature, max_tokens=max_tokens)
    sink.write(completion.text)
    return completion


_WORD_END = re.compile(r"\S+\s*")


def text_chunks(text: str, parts: int = CHUNKS) -> list[str]:
    """`text` cut at word ends into at most `parts` pieces of about equal length (joined, they are `text`)."""
    words = _WORD_END.findall(text)
    leading = text[: len(text) - len(text.lstrip())]
    if not words:
        return [text] if text else []
    words[0] = leading + words[0]
    size = max(1, -(-len(words) // parts))
    return ["".join(words[i:i + size]) for i in range(0, len(words), size)]


def write_chunks(sink: TextSink, text: str, parts: int = CHUNKS) -> None:
    """Stream text that was written all at once (the template synthesizer's) in a few pieces."""
    for chunk in text_chunks(text, parts):
        sink.write(chunk)


def sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The `data:` payloads of a server-sent event stream, up to OpenAI's `[DONE]` sentinel."""
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, comments (": keep-alive"), event names
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        if data:
            yield data
