"""DecodeBatch on tiny random models: continuous batching must equal one-at-a-time decoding.

Sequences of different lengths join a running batch at different steps, leave when done,
and the KV buffers grow past their headroom; every token must match a full recompute of
that sequence alone. A tiny Gemma 3 config checks the sliding-window layers too.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from wattserve.engines import batch as batch_mod  # noqa: E402
from wattserve.engines.batch import ATTN_IMPL, DecodeBatch  # noqa: E402
from wattserve.engines.sequence import Sequence  # noqa: E402


def _llama():
    cfg = transformers.LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return cfg, transformers.LlamaForCausalLM


def _gemma3():
    cfg = transformers.Gemma3TextConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=256,
        sliding_window=5,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    )
    return cfg, transformers.Gemma3ForCausalLM


def _model(make, attn: str = ATTN_IMPL):
    torch.manual_seed(0)
    cfg, cls = make()
    cfg._attn_implementation = attn
    return cls(cfg).to(torch.float64).eval()


def _reference(model, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    for _ in range(n):
        logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]
        ids.append(int(logits.argmax()))
    return ids[len(prompt) :]


def _seq(i: int, prompt: list[int], n: int) -> Sequence:
    return Sequence(
        str(i),
        prompt,
        max_tokens=n,
        temperature=0.0,
        top_p=1.0,
        seed=None,
        stop=(),
        ignore_eos=True,
        eos_ids=frozenset(),
        deliver=lambda item: None,
    )


@pytest.mark.parametrize("make", [_llama, _gemma3], ids=["llama-gqa", "gemma3-sliding"])
def test_continuous_batching_matches_sequential(make, monkeypatch):
    monkeypatch.setattr(batch_mod, "HEADROOM", 3)  # force buffer growth during the run
    model = _model(make)
    # (join at step, prompt, output tokens): short and long prompts, early and late joiners
    plan = [
        (0, [5, 6, 7], 9),
        (0, list(range(10, 22)), 4),
        (2, [3], 12),
        (5, list(range(30, 50)), 6),
        (9, [8, 9], 3),
    ]
    reference = _model(make, "sdpa")  # same weights, stock attention
    want = [_reference(reference, p, n) for _, p, n in plan]
    got: dict[int, list[int]] = {i: [] for i in range(len(plan))}
    b = DecodeBatch(model)
    step = 0
    with torch.inference_mode():
        while step < 40 and (len(b) or any(s >= step for s, _, _ in plan)):
            for i, (s, prompt, n) in enumerate(plan):
                if s == step:
                    seq = _seq(i, prompt, n)
                    logits, kv = b.prefill(seq)
                    tok = int(logits.argmax())
                    got[i].append(tok)
                    b.join(seq, kv, tok)
            if len(b):
                logits = b.step()
                toks = logits.argmax(-1).tolist()
                keep = []
                for r, (seq, tok) in enumerate(zip(b.rows, toks, strict=True)):
                    i = int(seq.request_id)
                    got[i].append(tok)
                    if len(got[i]) < plan[i][2]:
                        keep.append(r)
                b.set_last(toks)
                b.keep(keep)
            step += 1
    assert [got[i] for i in range(len(plan))] == want
    assert len(b) == 0 and b.width == 0


def test_rows_leaving_trim_padding_columns():
    model = _model(_llama)
    b = DecodeBatch(model)
    with torch.inference_mode():
        for i, prompt in enumerate(([1, 2], list(range(3, 23)))):
            seq = _seq(i, prompt, 5)
            logits, kv = b.prefill(seq)
            b.join(seq, kv, int(logits.argmax()))
        assert b.width == 20 and b.mask[0, : b.width].sum() == 2
        b.step()
        b.keep([0])  # the long row leaves: its columns are no longer needed
        assert b.width == 3 and bool(b.mask[0, : b.width].all())
