"""attn._core through numpy and torch: zero copies, strides, dtypes, errors, explain, KV cache."""

import numpy as np
import pytest

import attn

torch = pytest.importorskip("torch")


def ref_sdpa(q, k, v, causal=False, keep=None, bias=None, scale=None):
    """fp64 numpy reference: q [B, Hq, Nq, D], k/v [B, Hkv, Nk, D]."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    g = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)
    s = np.einsum("bhid,bhjd->bhij", q, k) * (scale or 1 / np.sqrt(q.shape[-1]))
    if bias is not None:
        s = s + bias
    vis = np.ones(s.shape, bool)
    if causal:
        vis &= np.tril(np.ones(s.shape[-2:], bool))
    if keep is not None:
        vis &= keep
    s = np.where(vis, s, -np.inf)
    m = s.max(-1, keepdims=True)
    p = np.exp(s - m)
    lse = np.log(p.sum(-1)) + m[..., 0]
    p /= p.sum(-1, keepdims=True)
    return p @ v, lse


def rand(*shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed + len(shape)).standard_normal(shape).astype(dtype)


def test_numpy_in_place_and_strided_views():
    B, N, H, D = 2, 24, 4, 16
    qkv = rand(B, N, 3, H, D, seed=1)  # packed BSHD: q, k, v are non-contiguous views
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    out_bshd = np.full((B, N, H, D), np.nan)
    out = out_bshd.transpose(0, 2, 1, 3)
    lse = np.empty((B, H, N))  # float64 inputs carry a float64 lse
    ptr = out_bshd.ctypes.data
    attn.sdpa_forward(out, q, k, v, lse=lse, causal=True)
    assert out_bshd.ctypes.data == ptr
    want, want_lse = ref_sdpa(q, k, v, causal=True)
    np.testing.assert_allclose(out, want, atol=1e-12)
    np.testing.assert_allclose(lse, want_lse, rtol=1e-13)


def test_numpy_bool_mask_bias_gqa_f32():
    q, k, v = rand(1, 4, 9, 8, dtype=np.float32), rand(1, 2, 11, 8, dtype=np.float32), rand(1, 2, 11, 8, dtype=np.float32)
    keep = np.random.default_rng(3).random((9, 11)) < 0.7
    keep[:, 0] = True
    bias = rand(1, 4, 9, 11, dtype=np.float32, seed=5)
    out = np.empty((1, 4, 9, 8), np.float32)
    attn.sdpa_forward(out, q, k, v, bool_mask=keep, bias=bias)
    want, _ = ref_sdpa(q, k, v, keep=keep, bias=bias)
    np.testing.assert_allclose(out, want, atol=2e-5)


def test_numpy_backward_matches_torch_autograd():
    q, k, v = rand(1, 2, 7, 8), rand(1, 2, 9, 8, seed=1), rand(1, 2, 9, 8, seed=2)
    out, lse = np.empty_like(q), np.empty((1, 2, 7))
    attn.sdpa_forward(out, q, k, v, lse=lse, causal=True, alignment="top_left")
    dout = rand(1, 2, 7, 8, seed=3)
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    attn.sdpa_backward(dq, dk, dv, dout, q, k, v, out, lse, causal=True, alignment="top_left")
    tq, tk, tv = (torch.from_numpy(x).requires_grad_() for x in (q, k, v))
    r = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
    r.backward(torch.from_numpy(dout))
    for got, t in ((dq, tq), (dk, tk), (dv, tv)):
        np.testing.assert_allclose(got, t.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_torch_tensors_zero_copy_all_dtypes(dtype):
    q = torch.randn(1, 2, 16, 32).to(dtype)
    k = torch.randn(1, 2, 20, 32).to(dtype)
    v = torch.randn(1, 20, 2, 32).to(dtype).transpose(1, 2)  # non-contiguous
    out = torch.full((1, 2, 16, 32), float("nan"), dtype=dtype)
    ptr = out.data_ptr()
    attn.sdpa_forward(out, q, k, v, bool_mask=torch.ones(16, 20, dtype=torch.bool))
    assert out.data_ptr() == ptr and not out.isnan().any()
    want = torch.nn.functional.scaled_dot_product_attention(q.double(), k.double(), v.double())
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 3e-2, torch.float16: 3e-3}[dtype]
    assert (out.double() - want).abs().max().item() < tol


def test_torch_tensor_requiring_grad_is_accepted():
    q = torch.randn(1, 1, 4, 8, requires_grad=True)
    out = torch.empty(1, 1, 4, 8)
    attn.sdpa_forward(out, q, q.detach().clone(), q.detach().clone())
    assert torch.isfinite(out).all()


def test_errors_are_value_and_type_errors_with_attn_messages():
    q, k, v = rand(1, 2, 4, 8), rand(1, 2, 5, 8), rand(1, 2, 5, 8)
    out = np.empty_like(q)
    with pytest.raises(ValueError, match=r"^k: k.shape\[3\] = 4, expected 8 = q.shape\[3\]"):
        attn.sdpa_forward(out, q, k[..., :4], v)
    with pytest.raises(TypeError, match="must share a dtype"):
        attn.sdpa_forward(out, q, k.astype(np.float32), v)
    with pytest.raises(ValueError, match="does not broadcast"):
        attn.sdpa_forward(out, q, k, v, bool_mask=np.ones((3, 4, 5), bool))
    with pytest.raises(ValueError, match="dropout_p"):
        attn.sdpa_forward(out, q, k, v, dropout_p=1.0)
    with pytest.raises(ValueError, match="not a parameter"):
        attn.sdpa_forward(out, q, k, v, casual=True)
    with pytest.raises(TypeError, match="^out: is a <class 'list'>, expected a writable numpy array or a CPU torch tensor"):
        attn.sdpa_forward([1.0], q, k, v)  # the kind of the error (a wrong kind of object), not its text, makes it a TypeError
    with pytest.raises(ValueError, match="overlaps"):
        attn.sdpa_forward(q, q, k, v)
    with pytest.raises(TypeError, match="dtype"):
        attn.sdpa_forward(out, q.astype(np.int16), k, v)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
@pytest.mark.parametrize("param", ["bool_mask", "bias"])
def test_uint8_mask_is_refused_naming_the_dtype_seen_and_the_accepted_ones(lib, param):
    # A uint8 array used to be read as bool (non-zero = attend), so a 0/1 "blocked" byte mask
    # silently inverted, and as a bias it failed naming bool, a dtype it was not.
    q, k, v = rand(1, 2, 4, 8), rand(1, 2, 5, 8), rand(1, 2, 5, 8)
    out = np.empty_like(q)
    mask = np.ones((4, 5), np.uint8)
    if lib == "torch":
        mask = torch.from_numpy(mask)
    with pytest.raises(TypeError, match=rf"^params\.mask\.{param}: has dtype uint8, which attn does not have, expected "
                                        r"float32, float64, bfloat16, float16, bool, int8, int32 or int64 \(for a mask"):
        attn.sdpa_forward(out, q, k, v, **{param: mask})
    with pytest.raises(TypeError, match=r"^q: has dtype int16, which attn does not have, expected float32"):
        attn.sdpa_forward(out, q.astype(np.int16), k, v)


def test_python_callbacks_and_explain():
    q, k, v = rand(1, 1, 6, 4), rand(1, 1, 6, 4, seed=1), rand(1, 1, 6, 4, seed=2)
    out = np.empty_like(q)
    attn.sdpa_forward(out, q, k, v, mask_mod=lambda b, h, i, j: j <= i)
    np.testing.assert_allclose(out, ref_sdpa(q, k, v, causal=True)[0], atol=1e-12)

    def boom(b, h, i, j):
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        attn.sdpa_forward(out, q, k, v, mask_mod=boom)
    verdicts = attn.explain(out, q, k, v)
    assert {v["backend"] for v in verdicts} >= {"reference", "cpu"}
    assert any(v["can_run"] for v in verdicts)
    cpu = next(v for v in verdicts if v["backend"] == "cpu")
    assert not cpu["can_run"] and "f64" in " ".join(cpu["reasons"])


def test_kv_cache_decode_matches_full_attention():
    B, Hq, Hkv, D, T = 2, 4, 2, 16, 12
    cache = attn.KvCache(B, Hkv, D, capacity=32)
    k, v = rand(B, Hkv, T, D, dtype=np.float32), rand(B, Hkv, T, D, dtype=np.float32, seed=9)
    cache.append(k, v)
    assert cache.lengths == [T, T]
    q = rand(B, Hq, 1, D, dtype=np.float32, seed=4)
    out = np.empty((B, Hq, 1, D), np.float32)
    attn.decode(out, q, cache)
    np.testing.assert_allclose(out, ref_sdpa(q, k, v)[0], atol=2e-5)
    with pytest.raises(TypeError, match="cache storage types"):
        attn.KvCache(1, 1, 8, capacity=4, dtype="f64")


def test_bench_quick_smoke(capsys):
    from attn import bench

    bench.main(["--quick", "--threads", "1"])
    out = capsys.readouterr().out
    assert "ratio" in out and "mha" in out
