"""attn.models.CausalLM against transformers' LlamaForCausalLM (docs/generation.md).

The test builds a small random LlamaForCausalLM (GQA, untied and tied embeddings, a non-default
rope_theta and rms_norm_eps, weights and norm gains randomised so that every part matters), saves
it with save_pretrained(safe_serialization=True), loads it into attn, and checks attn's logits
within 1e-4 (fp32) for the prompt and for each of 16 greedy steps, and the greedy tokens against
transformers' generate. A wrong rotary convention, norm, activation or head layout cannot pass.
"""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import attn.models  # noqa: E402

PROMPT = [5, 88, 13, 61, 2, 40, 40, 7, 90]
STEPS = 16


def make_llama(tmp_path, tied, Hkv=2, seed=0, **extra):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=Hkv, rms_norm_eps=1e-5, rope_theta=300.0, max_position_embeddings=64,
        tie_word_embeddings=tied, bos_token_id=None, eos_token_id=None, pad_token_id=None,
        attn_implementation="eager", **extra)
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif p.ndim == 2:
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[1]) * (1.0 if "embed" in name else 1.5))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    out = tmp_path / ("tied" if tied else "untied")
    model.save_pretrained(out, safe_serialization=True)
    return model, out


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("paged", [False, True])
def test_logits_match_transformers_for_prompt_and_16_steps(tmp_path, tied, paged):
    hf, path = make_llama(tmp_path, tied)
    lm = attn.models.CausalLM(path)
    assert lm.config["tie_word_embeddings"] is tied
    assert lm.config["rope_theta"] == 300.0
    r = lm.generate(PROMPT, STEPS, paged=paged, stop_tokens=[], return_dict=True)
    tokens = r["tokens"]
    assert tokens.shape == (STEPS,) and r["decode_steps"] == STEPS - 1
    full = PROMPT + tokens.tolist()
    with torch.no_grad():
        ref = hf(torch.tensor([full])).logits[0].numpy()
    Lp = len(PROMPT)
    np.testing.assert_allclose(r["prompt_logits"], ref[:Lp], atol=1e-4, rtol=0)
    np.testing.assert_allclose(r["logits"], ref[Lp - 1:Lp - 1 + STEPS], atol=1e-4, rtol=0)
    assert np.abs(ref).max() > 1.0  # logits of a size where a convention error shows
    # Greedy tokens are transformers' greedy tokens.
    with torch.no_grad():
        hf_new = hf.generate(torch.tensor([PROMPT]), max_new_tokens=STEPS, do_sample=False, min_new_tokens=STEPS,
                             attention_mask=torch.ones(1, Lp, dtype=torch.long))[0, Lp:].numpy()
    np.testing.assert_array_equal(tokens, hf_new)
    assert len(set(tokens.tolist())) > 1


def test_uncached_and_mqa_match_transformers(tmp_path):
    hf, path = make_llama(tmp_path, False, Hkv=1, seed=3, attention_bias=True, mlp_bias=True)
    lm = attn.models.CausalLM(path)
    ids = PROMPT + [1, 2, 3]
    with torch.no_grad():
        ref = hf(torch.tensor([ids])).logits[0].numpy()
    np.testing.assert_allclose(lm.logits(ids), ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(lm.cached_logits(ids, prefill=4), ref, atol=1e-4, rtol=0)
    r = lm.generate(PROMPT, 8, use_cache=False, stop_tokens=[], return_dict=True)
    np.testing.assert_array_equal(r["tokens"], lm.generate(PROMPT, 8, stop_tokens=[]))


def test_low_precision_caches_stay_close(tmp_path):
    _, path = make_llama(tmp_path, False)
    lm = attn.models.CausalLM(path)
    ids = PROMPT + lm.generate(PROMPT, 40, stop_tokens=[]).tolist()
    ref = lm.cached_logits(ids, prefill=len(PROMPT))
    scale = np.abs(ref).max()
    for dt in ("bf16", "i8"):
        got = lm.cached_logits(ids, prefill=len(PROMPT), kv_dtype=dt, paged=True)
        err = np.abs(got - ref).max()
        assert 0 < err < 0.05 * scale, (dt, err, scale)
        assert (got.argmax(-1) == ref.argmax(-1)).mean() > 0.9


def test_seeded_sampling_repeats_and_depends_on_the_seed(tmp_path):
    _, path = make_llama(tmp_path, True)
    lm = attn.models.CausalLM(path)
    kw = dict(temperature=1.2, top_k=30, top_p=0.9, stop_tokens=[])
    a = lm.generate(PROMPT, 30, seed=11, **kw)
    assert np.array_equal(a, lm.generate(PROMPT, 30, seed=11, **kw))
    assert np.array_equal(a, attn.models.CausalLM(path).generate(PROMPT, 30, seed=11, paged=True, **kw))
    assert not np.array_equal(a, lm.generate(PROMPT, 30, seed=12, **kw))
    assert not np.array_equal(a, lm.generate(PROMPT, 30, stop_tokens=[]))  # greedy


def test_eos_stops_generation(tmp_path):
    _, path = make_llama(tmp_path, False)
    greedy = attn.models.CausalLM(path).generate(PROMPT, 12, stop_tokens=[])
    cfg = json.loads((path / "config.json").read_text())
    cfg["eos_token_id"] = int(greedy[3])
    (path / "config.json").write_text(json.dumps(cfg))
    stopped = attn.models.CausalLM(path).generate(PROMPT, 12)
    first = greedy.tolist().index(int(greedy[3]))
    np.testing.assert_array_equal(stopped, greedy[:first + 1])


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        attn.models.CausalLM(tmp_path / "nope")
    _, path = make_llama(tmp_path, False)
    lm = attn.models.CausalLM(path)
    with pytest.raises(ValueError, match=r"ids\[1\] = 97, expected 0 ≤ id < vocab_size = 97"):
        lm.generate([1, 97], 4)
    with pytest.raises(ValueError, match="top_p"):
        lm.generate(PROMPT, 4, temperature=1.0, top_p=0.0)
    with pytest.raises(ValueError, match="kv_dtype"):
        lm.generate(PROMPT, 4, kv_dtype="f16")
    with pytest.raises(TypeError, match="prompt_ids"):
        lm.generate("hello", 4)
    cfg = json.loads((path / "config.json").read_text())
    cfg["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 300.0, "factor": 8.0}
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="rope_type \"llama3\""):
        attn.models.CausalLM(path)
