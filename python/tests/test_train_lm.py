"""attn.models.train_causal_lm (docs/training.md): nn::TrainableLlama trained from Python writes a
model directory that transformers' LlamaForCausalLM.from_pretrained loads with attn's logits
(within 1e-4, fp32) — the config.json writer and the Hugging Face names checked by transformers
itself — and the loss falls on a repetitive text; bad arguments are ValueErrors.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import attn.models  # noqa: E402

TEXT = b"It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife. " * 8


def test_trained_directory_loads_in_transformers_with_the_same_logits(tmp_path):
    out = tmp_path / "lm"
    losses = attn.models.train_causal_lm(TEXT, out, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4,
                                         num_kv_heads=2, rope_theta=500.0, steps=100, batch=4, seq_len=32, lr=1e-2,
                                         seed=1)
    assert losses.shape == (100,)
    assert losses[-5:].mean() < 0.5 * losses[:5].mean(), losses  # one repeated sentence: learnt quickly
    hf = transformers.LlamaForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    assert hf.config.num_key_value_heads == 2 and hf.config.vocab_size == 256
    lm = attn.models.CausalLM(out)
    ids = list(TEXT[:45])
    with torch.no_grad():
        ref = hf(torch.tensor([ids])).logits[0].numpy()
    np.testing.assert_allclose(lm.logits(ids), ref, atol=1e-4, rtol=0)
    assert np.abs(ref).max() > 1.0
    # The trained model continues the sentence it learnt (greedy, through the KV cache).
    new = lm.generate(list(b"It is a truth"), 12, stop_tokens=[])
    assert bytes(new.tolist()) == b" universally"


def test_bad_arguments_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="tokens"):
        attn.models.train_causal_lm(b"too short", tmp_path / "a", seq_len=32, steps=1)
    with pytest.raises(ValueError, match="num_kv_heads"):
        attn.models.train_causal_lm(TEXT, tmp_path / "b", num_heads=4, num_kv_heads=3, steps=1)
    with pytest.raises(ValueError, match="ids"):
        attn.models.train_causal_lm([1, 2, 300] * 40, tmp_path / "c", seq_len=8, steps=1)
