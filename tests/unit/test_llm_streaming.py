"""Streaming answers: the OpenAI (SSE) and Ollama (NDJSON) wire protocols against local HTTP servers,
restarts on retry and fallback, the template's chunks, and the gateway's reading of deltas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from agentlog.events.codec import Codec
from agentlog.llm.base import ChatMessage, Completion
from agentlog.llm.chain import GuardedModel, ProviderChain, RetryPolicy
from agentlog.llm.http import ProviderError
from agentlog.llm.ollama import OllamaChat
from agentlog.llm.openai import OpenAIChat
from agentlog.llm.streaming import TextSink, sse_data, stream_completion, text_chunks
from agentlog.llm.synthesis import LLMSynthesizer
from agentlog.services.synthesis.compose import TemplateSynthesizer, compose_answer
from agentlog.services.synthesis.deltas import SUBJECT, AnswerDelta
from agentlog.services.synthesis.service import write_answer
from agentlog.web.stream import delta_from_json, visible_to
from llm_fakes import ScriptedModel
from stream_fakes import RecordingSink, StreamingServer

PIECES = ["The answer", " is", " 42."]
MESSAGES: list[ChatMessage] = [{"role": "user", "content": "What is the answer?"}]


def test_openai_streams_each_piece_as_it_arrives_and_returns_the_whole_reply() -> None:
    sink = RecordingSink()
    with StreamingServer("openai", PIECES) as server:
        completion = OpenAIChat(server.url, "gpt-test", api_key="k").stream(MESSAGES, sink, max_tokens=50)
    assert sink.writes == PIECES
    assert (completion.text, completion.provider, completion.model) == ("The answer is 42.", "openai", "fake-model")
    assert (completion.prompt_tokens, completion.completion_tokens) == (21, 3)
    sent = server.requests[0]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True} and sent["max_tokens"] == 50


def test_ollama_streams_ndjson_lines_and_reads_the_counts_from_the_done_line() -> None:
    sink = RecordingSink()
    with StreamingServer("ollama", PIECES) as server:
        completion = OllamaChat(server.url, "llama3").stream(MESSAGES, sink)
    assert sink.writes == PIECES
    assert (completion.text, completion.provider) == ("The answer is 42.", "ollama")
    assert (completion.prompt_tokens, completion.completion_tokens) == (17, 3)
    assert server.requests[0]["stream"] is True


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_a_stream_cut_short_is_a_retryable_failure(kind: str) -> None:
    with StreamingServer(kind, PIECES, drop_after=1) as server:
        model = OpenAIChat(server.url) if kind == "openai" else OllamaChat(server.url)
        with pytest.raises(ProviderError) as failure:
            model.stream(MESSAGES, RecordingSink())
    assert failure.value.retryable and "ended before" in str(failure.value)


def test_a_retry_after_a_partial_reply_restarts_the_stream() -> None:
    sink = RecordingSink()
    with StreamingServer("openai", PIECES, drop_after=1) as server:
        guarded = GuardedModel(OpenAIChat(server.url), retry=RetryPolicy(max_attempts=2), sleep=lambda _: None)
        completion = guarded.stream(MESSAGES, sink)
    assert sink.calls == [("write", "The answer"), ("restart", ""), *[("write", p) for p in PIECES]]
    assert sink.text == completion.text == "The answer is 42."


def test_the_chain_restarts_the_stream_for_the_next_provider() -> None:
    sink = RecordingSink()
    with StreamingServer("ollama", PIECES, drop_after=2) as dying, StreamingServer("openai", ["Fine."]) as backup:
        chain = ProviderChain([GuardedModel(OllamaChat(dying.url), retry=RetryPolicy(max_attempts=1)),
                               GuardedModel(OpenAIChat(backup.url), retry=RetryPolicy(max_attempts=1))])
        completion = chain.stream(MESSAGES, sink)
    assert sink.calls[:3] == [("write", "The answer"), ("write", " is"), ("restart", "")]
    assert sink.text == completion.text == "Fine." and completion.provider == "openai"


def test_a_model_that_cannot_stream_is_written_in_one_piece() -> None:
    sink = RecordingSink()
    completion = stream_completion(ScriptedModel("plain", ["Hello there."]), MESSAGES, sink)
    assert sink.writes == ["Hello there."] and completion.text == "Hello there."


def test_sse_data_skips_comments_and_stops_at_done() -> None:
    lines = iter([": keep-alive", "", "event: x", 'data: {"a": 1}', "data:[DONE]", 'data: {"late": 1}'])
    assert list(sse_data(lines)) == ['{"a": 1}']


@pytest.mark.parametrize("text", ["", "one", "1 + 2 = 3.", "  padded  words here  ", "a b c d e f g h i j"])
def test_text_chunks_cut_at_word_ends_into_at_most_four_pieces(text: str) -> None:
    chunks = text_chunks(text)
    assert "".join(chunks) == text and len(chunks) <= 4 and all(chunks)
    assert all(c[-1].isspace() or c is chunks[-1] for c in chunks)


def _request() -> dict[str, Any]:
    return {"userInput": "What is 2+3?", "language": "en", "outcome": "completed", "synthesisRequired": True,
            "steps": [{"stepId": "s1", "tool": "calculateMath", "arguments": {"expression": "2+3"},
                       "status": "succeeded", "output": {"value": 5, "text": "2+3 = 5"}}]}


def test_the_template_answer_is_streamed_in_a_few_pieces() -> None:
    sink = RecordingSink()
    written = write_answer(TemplateSynthesizer(), _request(), sink)
    assert sink.text == written.text == compose_answer(_request())
    assert 1 <= len(sink.writes) <= 4 and written.synthesizer == "offline-template" and written.llm is None


class StreamingThenFailing:
    """A model that writes a piece and then dies: the synthesizer must not leave that piece on screen."""

    name = "flaky"

    def complete(self, messages: Sequence[ChatMessage], *, json_schema: Mapping[str, Any] | None = None,
                 temperature: float = 0.0, max_tokens: int = 512) -> Completion:
        raise AssertionError("a streaming model is streamed")

    def stream(self, messages: Sequence[ChatMessage], sink: TextSink, *, temperature: float = 0.0,
               max_tokens: int = 512) -> Completion:
        sink.write("Half an ans")
        raise ProviderError("flaky: connection dropped", retryable=True)


def test_a_model_failing_mid_answer_restarts_the_stream_with_the_template() -> None:
    sink = RecordingSink()
    written = LLMSynthesizer(StreamingThenFailing()).synthesize_streaming(_request(), sink)
    assert sink.calls[:2] == [("write", "Half an ans"), ("restart", "")]
    assert sink.text == written.text == compose_answer(_request()) and written.synthesizer == "offline-template"


def test_the_llm_synthesizer_streams_the_model_and_records_it() -> None:
    sink = RecordingSink()
    with StreamingServer("openai", PIECES) as server:
        written = LLMSynthesizer(OpenAIChat(server.url)).synthesize_streaming(_request(), sink)
    assert sink.writes == PIECES and written.text == "The answer is 42." and written.synthesizer == "llm"
    assert written.llm is not None and written.llm["completionTokens"] == 3


def test_a_delta_matches_its_schema_and_reads_back() -> None:
    delta = AnswerDelta("c1", "t1", "u1", 0, "Hello", False)
    raw = Codec().encode_record(SUBJECT, delta.to_json())
    assert delta_from_json(raw) == delta
    for bad in (b"not json", b"[]", b'{"conversationId": "c1"}',
                raw.replace(b'"seq":0', b'"seq":-1'), raw.replace(b'"done":false', b'"done":"no"')):
        assert delta_from_json(bad) is None


def test_a_stream_shows_its_users_deltas_and_a_tools_to_the_owner_only() -> None:
    mine, tools = AnswerDelta("c", "t", "u1", 0, "x", False), AnswerDelta("c", "t", "", 0, "x", False)
    assert visible_to(mine, "u1", None) and not visible_to(mine, "u2", "u2")
    assert visible_to(tools, "u1", "u1") and not visible_to(tools, "u2", "u1") and not visible_to(tools, "u1", None)


class TurnStreams:
    """Stands in for the tool worker's DeltaPublisher: one RecordingSink per turn."""

    def __init__(self) -> None:
        self.sinks: dict[tuple[str, str, str], RecordingSink] = {}

    def turn(self, conversation_id: str, turn_id: str, user_id: str) -> RecordingSink:
        return self.sinks.setdefault((conversation_id, turn_id, user_id), RecordingSink())


def test_general_chat_streams_the_models_reply_into_its_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentlog.services.synthesis import deltas
    from agentlog.tools import chat
    from agentlog.tools.registry import ToolContext

    streams = TurnStreams()
    monkeypatch.setattr(deltas, "shared_publisher", lambda client_id: streams)
    context = ToolContext("inv-1", "key-1", "c1", "t1", "s1", 1)
    with StreamingServer("ollama", ["Hello", " there!"]) as server:
        monkeypatch.setattr(chat, "chat_model", lambda: OllamaChat(server.url))
        out = chat.general_chat("Say hello", context=context)
    assert out.value == "Hello there!"
    assert streams.sinks[("c1", "t1", "")].writes == ["Hello", " there!"]  # the tool does not know the user
