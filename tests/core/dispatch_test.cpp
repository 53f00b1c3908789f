// Dispatch (src/core/dispatch.cpp): explain() gives a verdict per backend, a forced backend that
// cannot run throws an attn::Error listing every backend's reasons.

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>

#include "attn/error.hpp"
#include "attn/sdpa.hpp"
#include "attn/tensor.hpp"

namespace {

struct Small {
  attn::Tensor q{attn::DType::f32, {1, 2, 3, 4}}, k{attn::DType::f32, {1, 1, 5, 4}}, v{attn::DType::f32, {1, 1, 5, 4}};
  attn::Tensor out{attn::DType::f32, {1, 2, 3, 4}}, lse{attn::DType::f32, {1, 2, 3}};
  Small() {
    for (const attn::Tensor* t : {&q, &k, &v})
      for (std::int64_t e = 0; e < t->numel(); ++e) t->ptr<float>()[e] = std::sin(0.5f * static_cast<float>(e));
  }
};

TEST(CoreDispatch, ExplainGivesOneVerdictPerBackend) {
  Small s;
  const auto verdicts = attn::explain({s.out, s.lse, {}}, s.q, s.k, s.v, attn::SdpaParams{});
  std::set<attn::Backend> seen;
  bool reference_can_run = false;
  for (const auto& v : verdicts) {
    EXPECT_TRUE(seen.insert(v.backend).second) << "two verdicts for " << attn::backend_name(v.backend);
    if (v.can_run)
      EXPECT_TRUE(v.reasons.empty()) << attn::backend_name(v.backend);
    else
      EXPECT_FALSE(v.reasons.empty()) << attn::backend_name(v.backend) << " refuses without a reason";
    if (v.backend == attn::Backend::reference) reference_can_run = v.can_run;
  }
  EXPECT_TRUE(reference_can_run);
  EXPECT_TRUE(seen.count(attn::Backend::cuda)) << "every backend gets a verdict, built or not";
  EXPECT_EQ(verdicts.back().backend, attn::Backend::reference) << "the reference is the last fallback";
  const std::string text = attn::to_string(verdicts);
  EXPECT_NE(text.find("reference: can run"), std::string::npos) << text;
  EXPECT_EQ(static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')), verdicts.size());
}

TEST(CoreDispatch, ExplainValidatesFirst) {
  Small s;
  attn::SdpaParams params;
  params.dropout_p = 1.0;
  EXPECT_THROW(attn::explain({s.out, s.lse, {}}, s.q, s.k, s.v, params), attn::Error);
}

TEST(CoreDispatch, ForcedBackendThatCannotRunListsReasons) {
  Small s;
  attn::SdpaParams params;
  for (const auto& v : attn::explain({s.out, s.lse, {}}, s.q, s.k, s.v, params)) {
    if (v.can_run) continue;
    params.backend = v.backend;
    try {
      attn::sdpa_forward({s.out, s.lse, {}}, s.q, s.k, s.v, params);
      ADD_FAILURE() << attn::backend_name(v.backend) << " ran although explain() said it cannot";
    } catch (const attn::Error& e) {
      EXPECT_EQ(e.argument(), "params.backend");
      const std::string what = e.what();
      EXPECT_NE(what.find(", which cannot run this call"), std::string::npos) << what;
      EXPECT_EQ(e.kind(), attn::ErrorKind::unsupported);
      EXPECT_NE(what.find(std::string(attn::backend_name(v.backend)) + ": " + v.reasons.front()), std::string::npos)
          << what;
      EXPECT_NE(what.find("reference: can run"), std::string::npos) << "lists every backend: " << what;
    }
  }
}

TEST(CoreDispatch, BackwardScoreModWithoutGradIsRefusedWithReason) {
  Small s;
  attn::Tensor dout(attn::DType::f32, {1, 2, 3, 4}), dq(attn::DType::f32, {1, 2, 3, 4}),
      dk(attn::DType::f32, {1, 1, 5, 4}), dv(attn::DType::f32, {1, 1, 5, 4});
  attn::SdpaParams params;
  params.mask.score_mod.value = [](double x, std::int64_t, std::int64_t, std::int64_t, std::int64_t) {
    return 2.0 * x;
  };
  params.backend = attn::Backend::reference;
  try {
    attn::sdpa_backward({dq, dk, dv, {}}, dout, s.q, s.k, s.v, s.out, s.lse, params);
    ADD_FAILURE() << "backward ran without score_mod.grad";
  } catch (const attn::Error& e) {
    EXPECT_EQ(e.argument(), "params.backend");
    EXPECT_NE(std::string(e.what()).find("score_mod has no grad"), std::string::npos) << e.what();
  }
}

TEST(CoreDispatch, ReferenceRunsAForcedCall) {
  Small s;
  attn::SdpaParams params;
  params.backend = attn::Backend::reference;
  params.mask.causal = true;
  params.mask.alignment = attn::Alignment::bottom_right;  // Nq != Nk
  attn::sdpa_forward({s.out, s.lse, {}}, s.q, s.k, s.v, params);
  for (std::int64_t e = 0; e < s.out.numel(); ++e) EXPECT_TRUE(std::isfinite(s.out.ptr<float>()[e])) << e;
  EXPECT_STREQ(attn::backend_name(attn::Backend::automatic), "auto");
  EXPECT_NE(std::string(attn::version()).find('.'), std::string::npos);
}

}  // namespace
