// The sweep: shape sets, cases and runners (sweep.hpp).

#include "sweep.hpp"

#include <attn/error.hpp>
#include <attn/sdpa.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <sstream>

#include "baselines.hpp"

namespace attn::bench {

std::string Shape::name() const {
  // snprintf rather than string concatenation: GCC 12 warns falsely (-Wrestrict, bug 105329) there.
  char n[64], d[64], buf[160];
  const auto ll = [](std::int64_t x) { return static_cast<long long>(x); };
  if (Nq == Nk)
    std::snprintf(n, sizeof n, "N%lld", ll(Nq));
  else
    std::snprintf(n, sizeof n, "Nq%lld Nk%lld", ll(Nq), ll(Nk));
  if (D == Dv)
    std::snprintf(d, sizeof d, "D%lld", ll(D));
  else
    std::snprintf(d, sizeof d, "D%lld Dv%lld", ll(D), ll(Dv));
  std::snprintf(buf, sizeof buf, "B%lld H%lld/%lld %s %s%s", ll(B), ll(Hq), ll(Hkv), n, d, causal ? " causal" : "");
  return buf;
}

double visible_pairs(const Shape& s) {
  if (!s.causal) return static_cast<double>(s.Nq) * static_cast<double>(s.Nk);
  double pairs = 0;
  for (std::int64_t i = 0; i < s.Nq; ++i) pairs += static_cast<double>(std::clamp<std::int64_t>(i + s.Nk - s.Nq + 1, 0, s.Nk));
  return pairs;
}

double fwd_flops(const Shape& s) {
  return 2.0 * static_cast<double>(s.B * s.Hq) * visible_pairs(s) * static_cast<double>(s.D + s.Dv);
}

const char* op_name(Op op) { return op == Op::fwd ? "fwd" : op == Op::bwd ? "bwd" : "fwdbwd"; }

Op parse_op(const std::string& name) {
  for (Op op : {Op::fwd, Op::bwd, Op::fwdbwd})
    if (name == op_name(op)) return op;
  throw attn::Error(attn::ErrorKind::value, "--op", "= '" + name + "', expected fwd, bwd or fwdbwd");
}

double op_flops(const Shape& s, Op op) {
  const double factor = op == Op::fwd ? 1.0 : op == Op::bwd ? 2.5 : 3.5;
  return factor * fwd_flops(s);
}

namespace {

Shape make_shape(std::int64_t B, std::int64_t Hq, std::int64_t Hkv, std::int64_t N, std::int64_t D, bool causal) {
  return Shape{B, Hq, Hkv, N, N, D, D, causal};
}

Shape parse_shape(const std::string& spec) {
  long long v[5];
  char tail[4] = {};
  const int got = std::sscanf(spec.c_str(), "%lldx%lldx%lldx%lldx%lld%3s", &v[0], &v[1], &v[2], &v[3], &v[4], tail);
  const std::string t = tail;
  const bool ok = (got == 5 || (got == 6 && t == "c")) && v[0] > 0 && v[1] > 0 && v[2] > 0 && v[3] > 0 && v[4] > 0 &&
                  v[1] % v[2] == 0;
  if (!ok)
    throw attn::Error(attn::ErrorKind::value, "--shapes", "= '" + spec +
                      "', which is not a shape, expected full, quick, smoke or BxHqxHkvxNxD[c] with Hq % Hkv == 0 "
                      "(e.g. 1x16x16x1024x128c)");
  return make_shape(v[0], v[1], v[2], v[3], v[4], got == 6);
}

}  // namespace

std::vector<Shape> shape_set(const std::string& name) {
  std::vector<Shape> shapes;
  if (name == "full") {
    for (std::int64_t D : {64, 128})
      for (bool causal : {false, true})
        for (std::int64_t N : {512, 1024, 2048, 4096}) shapes.push_back(make_shape(1, 16, 16, N, D, causal));
    for (bool causal : {false, true}) shapes.push_back(make_shape(1, 32, 8, 2048, 128, causal));
  } else if (name == "quick") {
    for (bool causal : {false, true})
      for (std::int64_t N : {512, 1024, 2048}) shapes.push_back(make_shape(1, 16, 16, N, 128, causal));
    shapes.push_back(make_shape(1, 16, 16, 1024, 64, false));
    shapes.push_back(make_shape(1, 32, 8, 1024, 128, true));
  } else if (name == "smoke") {
    shapes.push_back(make_shape(1, 2, 2, 64, 32, false));
    shapes.push_back(make_shape(1, 4, 2, 96, 64, true));
  } else {
    std::stringstream in(name);
    for (std::string item; std::getline(in, item, ',');)
      if (!item.empty()) shapes.push_back(parse_shape(item));
    if (shapes.empty()) throw attn::Error(attn::ErrorKind::value, "--shapes", "is an empty list, expected at least one shape");
  }
  return shapes;
}

const char* impl_name(Impl impl) { return impl == Impl::cpu ? "cpu" : "naive_blas"; }

std::vector<Case> cases_for(const std::vector<Shape>& shapes, Op op) {
  std::vector<Case> cases;
  for (const Shape& s : shapes) {
    cases.push_back({s, Impl::naive_blas, DType::f32, op});
    cases.push_back({s, Impl::cpu, DType::f32, op});
    cases.push_back({s, Impl::cpu, DType::bf16, op});
  }
  return cases;
}

struct CaseRunner::State {
  Case c;
  int threads;
  Tensor q, k, v, out;
  Tensor dout, lse, dq, dk, dv;  // bwd and fwdbwd
  std::unique_ptr<NaiveAttention> naive;
  std::unique_ptr<NaiveAttentionBackward> naive_bwd;

  SdpaParams params() const {
    SdpaParams p;
    p.backend = Backend::cpu;
    p.num_threads = threads;
    p.mask.causal = c.shape.causal;
    p.mask.alignment = Alignment::bottom_right;
    return p;
  }
  void forward() {
    if (naive)
      naive->run(out.ptr<float>(), q.ptr<float>(), k.ptr<float>(), v.ptr<float>());
    else
      sdpa_forward({out, c.op == Op::fwd ? TensorView{} : TensorView(lse), {}}, q, k, v, params());
  }
  void backward() {
    if (naive_bwd)
      naive_bwd->run(dq.ptr<float>(), dk.ptr<float>(), dv.ptr<float>(), dout.ptr<float>(), q.ptr<float>(),
                     k.ptr<float>(), v.ptr<float>(), out.ptr<float>());
    else
      sdpa_backward({dq, dk, dv, {}}, dout, q, k, v, out, lse, params());
  }
};

CaseRunner::CaseRunner(const Case& c, int threads) : state_(std::make_unique<State>()) {
  State& st = *state_;
  const Shape& s = c.shape;
  st.c = c;
  st.threads = threads;
  st.q = Tensor(c.dtype, {s.B, s.Hq, s.Nq, s.D});
  st.k = Tensor(c.dtype, {s.B, s.Hkv, s.Nk, s.D});
  st.v = Tensor(c.dtype, {s.B, s.Hkv, s.Nk, s.Dv});
  st.out = Tensor(c.dtype, {s.B, s.Hq, s.Nq, s.Dv});
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<Tensor*> tensors = {&st.q, &st.k, &st.v, &st.out};
  if (c.op != Op::fwd) {
    st.dout = Tensor(c.dtype, {s.B, s.Hq, s.Nq, s.Dv});
    st.lse = Tensor(DType::f32, {s.B, s.Hq, s.Nq});
    st.dq = Tensor(c.dtype, {s.B, s.Hq, s.Nq, s.D});
    st.dk = Tensor(c.dtype, {s.B, s.Hkv, s.Nk, s.D});
    st.dv = Tensor(c.dtype, {s.B, s.Hkv, s.Nk, s.Dv});
    tensors.insert(tensors.end(), {&st.dout, &st.dq, &st.dk, &st.dv});  // dout random after q, k, v: same values
  }
  for (Tensor* t : tensors) {
    for (std::int64_t i = 0; i < t->numel(); ++i) {
      const float x = t == &st.q || t == &st.k || t == &st.v || t == &st.dout ? dist(rng) : 0.0f;
      if (c.dtype == DType::bf16)
        t->ptr<std::uint16_t>()[i] = f32_to_bf16(x);
      else
        t->ptr<float>()[i] = x;
    }
  }
  if (c.impl == Impl::naive_blas) {
    if (c.dtype != DType::f32) throw attn::Error(attn::ErrorKind::dtype, "dtype", std::string("= ") + attn::dtype_name(c.dtype) + ", expected f32 (the naive_blas baseline is fp32 only)");
    const NaiveAttention::Shape ns{s.B, s.Hq, s.Hkv, s.Nq, s.Nk, s.D, s.Dv, s.causal};
    st.naive = std::make_unique<NaiveAttention>(ns, threads);
    if (c.op != Op::fwd) st.naive_bwd = std::make_unique<NaiveAttentionBackward>(ns, threads);
  }
  if (c.op == Op::bwd) st.forward();  // out (and lse) for the backward, outside the timing
}

CaseRunner::~CaseRunner() = default;

void CaseRunner::run() {
  State& st = *state_;
  if (st.c.op != Op::bwd) st.forward();
  if (st.c.op != Op::fwd) st.backward();
}

std::vector<float> CaseRunner::output_f32() const {
  const State& st = *state_;
  std::vector<const Tensor*> parts = {&st.out};
  if (st.c.op != Op::fwd) parts = {&st.dq, &st.dk, &st.dv};
  std::vector<float> values;
  for (const Tensor* t : parts)
    for (std::int64_t i = 0; i < t->numel(); ++i)
      values.push_back(t->dtype() == DType::bf16 ? bf16_to_f32(t->ptr<std::uint16_t>()[i]) : t->ptr<float>()[i]);
  return values;
}

Timing time_runs(const std::function<void()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> seconds;
  for (int i = 0; i < std::max(reps, 1); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(seconds.begin(), seconds.end());
  const std::size_t n = seconds.size();
  const double median = n % 2 ? seconds[n / 2] : 0.5 * (seconds[n / 2 - 1] + seconds[n / 2]);
  return {median, seconds.front()};
}

}  // namespace attn::bench
