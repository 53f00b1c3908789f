// `attn check [--cases N] [--seed S] [--verbose]`: runs every backend that can run a case (other
// than the reference) against the reference on the same inputs and prints a pass/fail table.
// Backends are found through attn::explain(), so a newly registered backend is checked without
// changes here.
//
// Tolerances (max abs error, inputs ~ N(0, 1), outputs in the inputs' dtype, lse in f32):
//   f32   out 1e-4, lse 1e-4  fp32 accumulation vs the reference's fp64 on modest sizes
//   bf16  out 3e-2, lse 1e-3  |out| < ~4 and one bf16 ulp there is 2^-8·2 ≈ 8e-3; allows a few ulps
//   f16   out 5e-3, lse 1e-3  one f16 ulp at |out| < 4 is 2^-11·2 ≈ 2e-3
// lse is compared in f32 for every dtype: both sides compute S from the same rounded inputs.
// Equal infinities (lse = -inf on fully masked rows) count as no error; NaN counts as infinite error.
//
// Backward (second table): the same cases, the reference's out and lse and a random dout; each
// backend writes dq, dk, dv (and dbias on bias cases) in f32, compared with the reference's as
// max |error| / (1 + max |reference gradient|) ≤ 1e-4 for f32 and 1e-3 for bf16/f16 inputs (both
// sides read the same rounded inputs, so only the fp32 accumulation differs).

#include <attn/error.hpp>
#include <attn/sdpa.hpp>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "check_cases.hpp"
#include "commands.hpp"

namespace attn_cli {
namespace {

struct Tolerance {
  double out, lse;
};

Tolerance tolerance(attn::DType dtype) {
  switch (dtype) {
    case attn::DType::bf16: return {3e-2, 1e-3};
    case attn::DType::f16: return {5e-3, 1e-3};
    default: return {1e-4, 1e-4};
  }
}

double element_error(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<double>::infinity();
  if (a == b) return 0.0;  // also equal infinities
  return std::abs(a - b);
}

// Calls f(a[idx], b[idx]) over every logical index of `a` (b has a's logical shape; any strides).
template <class F>
void for_each_pair(const attn::TensorView& a, const attn::TensorView& b, F&& f) {
  std::array<std::int64_t, attn::kMaxRank> n{1, 1, 1, 1};
  for (int ax = 0; ax < a.rank; ++ax) n[4 - a.rank + ax] = a.shape[ax];
  auto off = [](const attn::TensorView& t, const std::int64_t (&idx)[4]) {
    std::int64_t o = 0;
    for (int ax = 0; ax < t.rank; ++ax) o += idx[4 - t.rank + ax] * t.strides[ax];
    return o;
  };
  for (std::int64_t i0 = 0; i0 < n[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < n[1]; ++i1)
      for (std::int64_t i2 = 0; i2 < n[2]; ++i2)
        for (std::int64_t i3 = 0; i3 < n[3]; ++i3) {
          const std::int64_t idx[4] = {i0, i1, i2, i3};
          f(attn::load_f64(a, off(a, idx)), attn::load_f64(b, off(b, idx)));
        }
}

// Max abs difference of two views of the same logical shape (any strides).
double max_abs_diff(const attn::TensorView& a, const attn::TensorView& b) {
  double err = 0.0;
  for_each_pair(a, b, [&](double x, double y) { err = std::max(err, element_error(x, y)); });
  return err;
}

CheckOutputs run(const CheckCase& c, const CheckProblem& p, attn::Backend backend) {
  CheckOutputs o = make_outputs(c);
  attn::SdpaParams params = p.params;
  params.backend = backend;
  attn::sdpa_forward({o.outv, o.lse, {}}, p.qv, p.kv, p.vv, params);
  return o;
}

double max_abs(const attn::TensorView& t) {
  double m = 0.0;
  for_each_pair(t, t, [&](double x, double) { m = std::max(m, std::abs(x)); });
  return m;
}

/// Largest relative gradient error of `got` against `ref`: dq, dk, dv and dbias when present.
double grad_error(const CheckGrads& got, const CheckGrads& ref) {
  double err = 0.0;
  const attn::TensorView* g[] = {&got.views.dq, &got.views.dk, &got.views.dv, &got.views.dbias};
  const attn::TensorView* r[] = {&ref.views.dq, &ref.views.dk, &ref.views.dv, &ref.views.dbias};
  for (int t = 0; t < 4; ++t)
    if (r[t]->defined()) err = std::max(err, max_abs_diff(*g[t], *r[t]) / (1.0 + max_abs(*r[t])));
  return err;
}

CheckGrads run_backward(const CheckCase& c, const CheckProblem& p, const CheckOutputs& fwd, const CheckOutputs& dout,
                        attn::Backend backend) {
  CheckGrads g = make_grads(c, p);
  attn::SdpaParams params = p.params;
  params.backend = backend;
  attn::sdpa_backward(g.views, dout.outv, p.qv, p.kv, p.vv, fwd.outv, fwd.lse, params);
  return g;
}

/// Why a backend cannot run a call, as one line.
std::string reasons(const attn::BackendVerdict& v) {
  std::string why;
  for (const auto& r : v.reasons) why += (why.empty() ? "" : "; ") + r;
  return why;
}

struct Row {
  std::string case_name, backend;
  double out_err = 0.0, lse_err = 0.0;
  Tolerance tol{};
  std::string status;  // "pass", "FAIL", "ERROR: ..."
};

void print_row(const Row& r) {
  std::printf("%-38s %-10s %10.3g %10.3g %9.1g  %s\n", r.case_name.c_str(), r.backend.c_str(), r.out_err, r.lse_err,
              r.tol.out, r.status.c_str());
}

/// Backward rows of one case: every backend that can run its backward, against the reference.
void check_backward(const CheckCase& c, const CheckProblem& p, const CheckOutputs& ref_fwd, std::uint64_t seed,
                    bool verbose, std::vector<Row>& rows, int& skipped) {
  const CheckOutputs dout = make_dout(c, seed);
  const double tol = c.dtype == attn::DType::f32 ? 1e-4 : 1e-3;
  const CheckGrads ref = run_backward(c, p, ref_fwd, dout, attn::Backend::reference);
  const CheckGrads probe = make_grads(c, p);
  for (const attn::BackendVerdict& v :
       attn::explain(probe.views, dout.outv, p.qv, p.kv, p.vv, ref_fwd.outv, ref_fwd.lse, p.params)) {
    if (v.backend == attn::Backend::reference) continue;
    if (!v.can_run) {
      ++skipped;
      if (verbose) rows.push_back({c.name(), attn::backend_name(v.backend), NAN, NAN, {tol, 0.0}, "skip: " + reasons(v)});
      continue;
    }
    Row row{c.name(), attn::backend_name(v.backend), 0.0, NAN, {tol, 0.0}, "pass"};
    try {
      row.out_err = grad_error(run_backward(c, p, ref_fwd, dout, v.backend), ref);
      if (!(row.out_err <= tol)) row.status = "FAIL";
    } catch (const std::exception& e) {
      row.status = std::string("ERROR: ") + e.what();
    }
    rows.push_back(row);
  }
}

int run_check(int count, std::uint64_t seed, bool verbose) {
  const std::vector<CheckCase> cases = make_cases(count, seed);
  std::vector<Row> bwd_rows;
  int bwd_skipped = 0;
  std::printf("attn %s check: %zu cases, seed %llu\n\n", attn::version(), cases.size(),
              static_cast<unsigned long long>(seed));
  std::printf("%-38s %-10s %10s %10s %9s  %s\n", "case", "backend", "out err", "lse err", "tol", "result");
  int compared = 0, failed = 0, skipped = 0;
  for (std::size_t ci = 0; ci < cases.size(); ++ci) {
    const CheckCase& c = cases[ci];
    const auto problem = build_problem(c, seed + ci);
    const CheckOutputs ref = run(c, *problem, attn::Backend::reference);
    // The reference itself: outputs must be finite (masked rows give 0, never NaN).
    if (!std::isfinite(max_abs_diff(ref.outv, ref.outv))) {
      print_row({c.name(), "reference", NAN, NAN, tolerance(c.dtype), "FAIL (non-finite out)"});
      ++failed;
    }
    const CheckOutputs probe = make_outputs(c);
    for (const attn::BackendVerdict& v :
         attn::explain({probe.outv, probe.lse, {}}, problem->qv, problem->kv, problem->vv, problem->params)) {
      if (v.backend == attn::Backend::reference) continue;
      if (!v.can_run) {
        ++skipped;
        if (verbose)
          std::printf("%-38s %-10s %10s %10s %9s  skip: %s\n", c.name().c_str(), attn::backend_name(v.backend), "-",
                      "-", "-", reasons(v).c_str());
        continue;
      }
      Row row{c.name(), attn::backend_name(v.backend), 0.0, 0.0, tolerance(c.dtype), "pass"};
      ++compared;
      try {
        const CheckOutputs got = run(c, *problem, v.backend);
        row.out_err = max_abs_diff(got.outv, ref.outv);
        row.lse_err = max_abs_diff(got.lse, ref.lse);
        if (!(row.out_err <= row.tol.out && row.lse_err <= row.tol.lse)) row.status = "FAIL";
      } catch (const std::exception& e) {
        row.status = std::string("ERROR: ") + e.what();
      }
      if (row.status != "pass") ++failed;
      print_row(row);
    }
    check_backward(c, *problem, ref, seed + ci + 7919, verbose, bwd_rows, bwd_skipped);
  }
  std::printf("\nbackward: dq, dk, dv (and dbias) in f32, max |err| / (1 + max |reference|)\n");
  std::printf("%-38s %-10s %10s %9s  %s\n", "case", "backend", "grad err", "tol", "result");
  for (const Row& r : bwd_rows) {
    if (r.status.rfind("skip", 0) == 0) {
      std::printf("%-38s %-10s %10s %9s  %s\n", r.case_name.c_str(), r.backend.c_str(), "-", "-", r.status.c_str());
      continue;
    }
    ++compared;
    if (r.status != "pass") ++failed;
    std::printf("%-38s %-10s %10.3g %9.1g  %s\n", r.case_name.c_str(), r.backend.c_str(), r.out_err, r.tol.out,
                r.status.c_str());
  }
  skipped += bwd_skipped;
  std::printf("\n");
  if (compared == 0) {
    std::printf(
        "note: no backend other than the reference can run these cases, so nothing was compared\n"
        "      (the reference ran all %zu cases; fast backends appear here once they are built in).\n",
        cases.size());
  }
  std::printf("%d comparisons, %d failed, %d (case, backend) pairs skipped%s\n", compared, failed, skipped,
              skipped && !verbose ? " (--verbose lists why)" : "");
  std::printf("%s\n", failed ? "check FAILED" : "check passed");
  return failed ? 1 : 0;
}

}  // namespace

void add_check(CLI::App& app) {
  auto* cmd = app.add_subcommand("check", "Compare every fast backend with the reference on small cases");
  struct Options {
    int cases = fixed_case_count();
    std::uint64_t seed = 1;
    bool verbose = false;
  };
  auto opts = std::make_shared<Options>();
  cmd->add_option("--cases", opts->cases, "Number of cases: the fixed list first, then seeded random ones")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--seed", opts->seed, "Seed of the random inputs and of the extra cases")->capture_default_str();
  cmd->add_flag("-v,--verbose", opts->verbose, "List why a backend skipped a case");
  cmd->callback([opts] { exit_code() = run_check(opts->cases, opts->seed, opts->verbose); });
}

}  // namespace attn_cli
