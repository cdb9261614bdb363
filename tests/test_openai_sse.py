"""The batch SSE reader and stream books (wattserve/openai/sse.py)."""

from __future__ import annotations

import orjson

from wattserve.openai.sse import ERROR_EVENT, SSEReader, StreamBooks, payloads


def _ev(obj: dict) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def _chat(text: str | None, finish: str | None = None) -> dict:
    delta = {} if text is None else {"content": text}
    return {
        "id": "x",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


USAGE = {
    "id": "x",
    "choices": [],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
}


def test_reader_joins_events_split_across_reads_and_crlf():
    stream = (
        _ev(_chat("Hel"))
        + _ev(_chat("lo")).replace(b"\n", b"\r\n")
        + b": keep-alive comment\n\n"
        + b"data:[DONE]\n\n"
    )
    r = SSEReader()
    got: list[bytes] = []
    for i in range(0, len(stream), 7):  # every 7 bytes, so lines and CRLF pairs are cut
        region = r.feed(stream[i : i + 7])
        assert region == b"" or region.endswith(b"\n\n")  # whole events only
        got += payloads(region)
    assert [orjson.loads(p)["choices"][0]["delta"]["content"] for p in got[:2]] == ["Hel", "lo"]
    assert got[2:] == [b"[DONE]"]


def test_reader_trims_payloads_and_skips_empty_data_lines():
    assert payloads(SSEReader().feed(b"data:   [DONE]  \ndata:\n\ndata: {}\n\n")) == [
        b"[DONE]",
        b"{}",
    ]
    r = SSEReader()
    assert r.feed(b'data: {"a"') == b""  # no complete event yet
    assert r.feed(b": 1}\n") == b""
    assert payloads(r.feed(b"\n")) == [b'{"a": 1}']


def test_books_collect_text_finish_usage_and_drop_the_usage_only_event():
    b = StreamBooks(chat=True, t0=0.0)
    region = SSEReader().feed(
        _ev(_chat("a"))
        + _ev(_chat("b"))
        + _ev(_chat(None, "stop"))
        + _ev(USAGE)
        + b"data: [DONE]\n\n"
    )
    out, done, error = b.take(region)
    assert done and error is None
    assert b.parts == ["a", "b"] and b.finish == "stop" and (b.in_tok, b.out_tok) == (7, 3)
    assert b.n == 3 and b.ttft_s is not None
    events = payloads(out)
    assert len(events) == 3 and all(b'"usage"' not in e for e in events)  # ours replaces it
    assert out.startswith(b"data: ") and out.endswith(b"\n\n")


def test_books_on_completions_text():
    b = StreamBooks(chat=False, t0=0.0)
    ev = {
        "object": "text_completion",
        "choices": [{"index": 0, "text": "xy", "finish_reason": "length"}],
    }
    out, done, error = b.take(SSEReader().feed(_ev(ev)))
    assert (done, error, b.parts, b.finish) == (False, None, ["xy"], "length")
    assert payloads(out) == [orjson.dumps(ev)]


def test_books_pass_an_upstream_error_event_on_and_stop_there():
    b = StreamBooks(chat=True, t0=0.0)
    err = {"error": {"message": "overloaded", "type": "server_error"}}
    out, done, error = b.take(SSEReader().feed(_ev(_chat("a")) + _ev(err) + _ev(_chat("never"))))
    assert error == ERROR_EVENT and not done
    assert b.parts == ["a"] and b"overloaded" in out and b"never" not in out


def test_books_report_malformed_events_as_errors():
    for bad in (b"data: {not json}\n\n", b"data: [1, 2]\n\n", b'data: {"choices": [3]}\n\n'):
        out, done, error = StreamBooks(chat=True, t0=0.0).take(SSEReader().feed(bad))
        assert out == b"" and error is not None and error != ERROR_EVENT, bad


def test_chunks_outside_the_typed_fast_path_are_still_read():
    # tokens as floats and an extra nested field: msgspec's structs refuse the floats, the
    # orjson path reads them; both paths must give the same books
    odd = {
        "choices": [
            {
                "index": 0,
                "delta": {"content": "z", "role": "assistant"},
                "finish_reason": "stop",
                "logprobs": {"content": [{"token": "z", "logprob": -0.1}]},
            }
        ]
    }
    usage = {"choices": [], "usage": {"prompt_tokens": 5.0, "completion_tokens": 1.0}}
    b = StreamBooks(chat=True, t0=0.0)
    out, done, error = b.take(SSEReader().feed(_ev(odd) + _ev(usage) + b"data: [DONE]\n\n"))
    assert (done, error, b.parts, b.finish, b.in_tok, b.out_tok) == (
        True,
        None,
        ["z"],
        "stop",
        5,
        1,
    )
    assert payloads(out) == [orjson.dumps(odd)]


def test_fast_and_split_paths_book_and_pass_on_the_same():
    """Plain events take the fast path (the region decoded as it is); the same events with a
    comment line, CRLF-free odd spacing or a usage event in the middle take the split path:
    same books, same events passed on."""
    evs = [_chat("Hel"), _chat("lo"), _chat(None, "stop")]
    plain = b"".join(_ev(e) for e in evs) + _ev(USAGE) + b"data: [DONE]\n\n"
    odd = (
        b": hi\n\n"
        + b"".join(b"data:" + orjson.dumps(e) + b"\n\n" for e in evs)
        + _ev(USAGE)
        + b"data: [DONE]\n\n"
    )
    mid = _ev(evs[0]) + _ev(USAGE) + b"".join(_ev(e) for e in evs[1:]) + b"data: [DONE]\n\n"
    got = []
    for stream in (plain, odd, mid):
        b = StreamBooks(chat=True, t0=0.0)
        out, done, error = b.take(SSEReader().feed(stream))
        got.append(
            (
                done,
                error,
                "".join(b.parts),
                b.finish,
                b.in_tok,
                b.out_tok,
                b.n,
                [orjson.loads(p) for p in payloads(out)],
            )
        )
    assert got[0] == got[1] == got[2]
    assert got[0][:7] == (True, None, "Hello", "stop", 7, 3, 3)
    # [DONE] inside the text of an event is text, not the end of the stream
    b = StreamBooks(chat=True, t0=0.0)
    out, done, error = b.take(SSEReader().feed(_ev(_chat("say [DONE] now"))))
    assert (done, error, b.parts) == (False, None, ["say [DONE] now"])


def test_plain_events_never_need_the_split(monkeypatch):
    import wattserve.openai.sse as sse

    def no_split(region: bytes) -> list[bytes]:
        raise AssertionError("split path taken")

    monkeypatch.setattr(sse, "payloads", no_split)
    b = StreamBooks(chat=True, t0=0.0)
    region = SSEReader().feed(
        _ev(_chat("a")) + _ev(_chat(None, "length")) + _ev(USAGE) + b"data: [DONE]\n\n"
    )
    out, done, error = b.take(region)
    assert (done, error, b.parts, b.n) == (True, None, ["a"], 2) and out == _ev(_chat("a")) + _ev(
        _chat(None, "length")
    )
