"""Workloads: random prompts with exact token counts (real tokenizer), files, traces."""

from __future__ import annotations

import json

import pytest

from wattserve.bench.workloads import custom_workload, random_workload, trace_workload
from wattserve.errors import ConfigError


class _Tok:
    """The encode/decode surface of a Hugging Face tokenizer over a ``tokenizers`` BPE model."""

    def __init__(self, tok):
        self.tok = tok
        self.vocab_size = tok.get_vocab_size()
        self.all_special_ids = [tok.token_to_id("<eos>")]

    def encode(self, text, add_special_tokens=True):
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens=False):
        return self.tok.decode(list(ids), skip_special_tokens=skip_special_tokens)


@pytest.fixture(scope="module")
def tokenizer():
    """A real byte-level BPE tokenizer trained here in milliseconds (no hub, no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [
        f"the quick brown fox jumps over the lazy dog {i} times, energy per token"
        for i in range(200)
    ]
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<eos>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    return _Tok(tok)


def test_random_prompts_have_the_stated_token_count(tokenizer):
    wl = random_workload(12, input_len=64, output_len=32, seed=5, tokenizer=tokenizer, model="m")
    assert len(wl.requests) == 12 and wl.token_counting == "tokenizer"
    for r in wl.requests:
        assert len(tokenizer.encode(r.prompt, add_special_tokens=False)) == 64
        assert r.max_tokens == 32 and r.ignore_eos and r.input_tokens == 64
    again = random_workload(12, 64, 32, seed=5, tokenizer=tokenizer, model="m")
    assert [r.prompt for r in again.requests] == [r.prompt for r in wl.requests]
    assert len({r.id for r in wl.requests}) == 12


def test_random_range_ratio_and_word_approximation():
    wl = random_workload(200, 100, 40, range_ratio=0.5, seed=1, endpoint="chat")
    ins = [r.input_tokens for r in wl.requests]
    outs = [r.max_tokens for r in wl.requests]
    assert min(ins) >= 50 and max(ins) <= 150 and len(set(ins)) > 20
    assert min(outs) >= 20 and max(outs) <= 60
    assert wl.token_counting == "approx-words"
    r = wl.requests[0]
    assert r.endpoint == "chat" and len(r.messages[0].content.split()) == r.input_tokens


def test_custom_jsonl_and_csv(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"prompt": "hello", "output_len": 7}\n\n{"prompt": "world"}\n')
    wl = custom_workload(p, None, output_len=16)
    assert [(r.prompt, r.max_tokens) for r in wl.requests] == [("hello", 7), ("world", 16)]
    c = tmp_path / "d.csv"
    c.write_text('prompt,max_tokens\n"a, b",3\nc,\n')
    wl = custom_workload(c, 5, output_len=9)
    assert [r.max_tokens for r in wl.requests] == [3, 9, 3, 9, 3]
    assert [r.id for r in wl.requests] == [f"req-{i}" for i in range(5)]


def test_malformed_dataset_names_the_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"prompt": "ok"}\n{"prompt": "oops"\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: invalid JSON"):
        custom_workload(p, None, 8)
    p.write_text('{"prompt": "ok"}\n{"text": ""}\n')
    with pytest.raises(ConfigError, match=r":2: needs a non-empty 'prompt'"):
        custom_workload(p, None, 8)
    p.write_text('{"prompt": "ok", "output_len": -3}\n')
    with pytest.raises(ConfigError, match=r":1: output_len must be a positive integer"):
        custom_workload(p, None, 8)
    with pytest.raises(ConfigError, match="not found"):
        custom_workload(tmp_path / "nope.jsonl", None, 8)


def test_trace_arrivals_from_timestamps(tmp_path, tokenizer):
    p = tmp_path / "trace.jsonl"
    rows = [
        {"timestamp": 100.5, "input_len": 8, "output_len": 4},
        {"timestamp": 100.0, "input_len": 16, "output_len": 2},
        {"timestamp": 103.0, "prompt": "given prompt"},
    ]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    wl = trace_workload(p, None, output_len=5, tokenizer=tokenizer)
    assert wl.arrivals_s == pytest.approx([0.0, 0.5, 3.0])
    assert [r.max_tokens for r in wl.requests] == [2, 4, 5]
    assert len(tokenizer.encode(wl.requests[0].prompt, add_special_tokens=False)) == 16
    assert wl.requests[2].prompt == "given prompt"
    p.write_text('{"input_len": 4}\n')
    with pytest.raises(ConfigError, match=":1: needs a 'timestamp'"):
        trace_workload(p, None, 5)
