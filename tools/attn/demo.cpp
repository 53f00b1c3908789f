// `attn demo`: a four-token causal attention problem, printed as P = softmax(S) and O = P·V, to
// show what sdpa_forward computes and which outputs it can return.

#include <attn/sdpa.hpp>
#include <attn/tensor.hpp>

#include <cstdio>
#include <vector>

#include "commands.hpp"

namespace attn_cli {
namespace {

void print_matrix(const char* title, const std::vector<float>& m, std::int64_t rows, std::int64_t cols) {
  std::printf("%s\n", title);
  for (std::int64_t i = 0; i < rows; ++i) {
    std::printf("  ");
    for (std::int64_t j = 0; j < cols; ++j) std::printf("%8.4f", m[i * cols + j]);
    std::printf("\n");
  }
}

int run_demo() {
  const std::int64_t N = 4, D = 2;
  // One batch row, one head: q, k, v [1, 1, N, D].
  std::vector<float> q = {1, 0, 0, 1, 1, 1, -1, 0.5f};
  std::vector<float> k = {1, 0, 0, 1, 1, 1, 0.5f, -1};
  std::vector<float> v = {1, 0, 0, 1, 2, 2, -1, 3};
  std::vector<float> out(N * D), lse(N), probs(N * N);
  auto t4 = [](std::vector<float>& buf, std::int64_t rows, std::int64_t cols) {
    return attn::TensorView(buf.data(), attn::DType::f32, {1, 1, rows, cols});
  };
  attn::SdpaParams params;
  params.mask.causal = true;
  attn::sdpa_forward({t4(out, N, D), attn::TensorView(lse.data(), attn::DType::f32, {1, 1, N}), t4(probs, N, N)},
                     t4(q, N, D), t4(k, N, D), t4(v, N, D), params);

  std::printf("attn %s demo: causal attention, N = %lld tokens, head dim D = %lld, scale 1/sqrt(D)\n\n",
              attn::version(), static_cast<long long>(N), static_cast<long long>(D));
  print_matrix("q [N, D]", q, N, D);
  print_matrix("k [N, D]", k, N, D);
  print_matrix("v [N, D]", v, N, D);
  print_matrix("P = softmax(q·kᵀ/sqrt(D)) with the causal mask [N, N] (rows sum to 1)", probs, N, N);
  print_matrix("out = P·v [N, D]", out, N, D);
  print_matrix("lse = log sum_j exp(s_ij) [N]", lse, 1, N);
  return 0;
}

}  // namespace

void add_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "Print a small causal attention example (scores, probabilities, output)");
  cmd->callback([] { exit_code() = run_demo(); });
}

}  // namespace attn_cli
