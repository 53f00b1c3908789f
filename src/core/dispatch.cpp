// Public entry points: validate once, then run the requested backend or the first one that can
// run (docs/contract.md §11). A forced backend that cannot run throws with every reason.

#include <sstream>

#include "attn/error.hpp"
#include "attn/sdpa.hpp"
#include "core/backend.hpp"

#ifndef ATTN_VERSION_STRING
#define ATTN_VERSION_STRING "0.0.0"
#endif

namespace attn {
namespace core {
#if ATTN_HAVE_CPU_BACKEND
const BackendOps& cpu_backend();
#endif

const std::vector<BackendOps>& backends() {
  static const std::vector<BackendOps> list = {
#if ATTN_HAVE_CPU_BACKEND
      cpu_backend(),
#endif
      reference_backend(),
  };
  return list;
}
}  // namespace core

const char* backend_name(Backend backend) {
  switch (backend) {
    case Backend::automatic: return "auto";
    case Backend::reference: return "reference";
    case Backend::cpu: return "cpu";
    case Backend::cuda: return "cuda";
  }
  return "?";
}

const char* version() { return ATTN_VERSION_STRING; }

namespace {

template <class Args, class Can>
std::vector<BackendVerdict> verdicts(const Args& args, Can can) {
  std::vector<BackendVerdict> r;
  for (const core::BackendOps& ops : core::backends()) {
    BackendVerdict v{ops.id, false, {}};
    v.can_run = can(ops, args, v.reasons);
    r.push_back(std::move(v));
  }
  bool has_cuda = false;
  for (const auto& v : r) has_cuda |= v.backend == Backend::cuda;
  if (!has_cuda) r.insert(r.begin(), BackendVerdict{Backend::cuda, false, {"attn was built without CUDA"}});
  return r;
}

template <class Args, class Can>
const core::BackendOps& choose(Backend wanted, const Args& args, Can can) {
  std::vector<BackendVerdict> all = verdicts(args, can);
  for (const core::BackendOps& ops : core::backends()) {
    if (wanted != Backend::automatic && ops.id != wanted) continue;
    core::Reasons reasons;
    if (can(ops, args, reasons)) return ops;
  }
  std::ostringstream os;
  os << "= " << backend_name(wanted)
     << (wanted == Backend::automatic ? ", but no backend can run this call" : ", which cannot run this call")
     << ", expected a backend that can; the verdicts:\n" << to_string(all);
  throw Error(ErrorKind::unsupported, "params.backend", os.str());
}

const auto can_fwd = [](const core::BackendOps& ops, const core::ForwardArgs& a, core::Reasons& r) {
  return ops.can_forward(a, r);
};
const auto can_bwd = [](const core::BackendOps& ops, const core::BackwardArgs& a, core::Reasons& r) {
  return ops.can_backward(a, r);
};

}  // namespace

std::string to_string(const std::vector<BackendVerdict>& verdicts) {
  std::ostringstream os;
  for (const auto& v : verdicts) {
    os << "  " << backend_name(v.backend) << ": ";
    if (v.can_run) {
      os << "can run\n";
      continue;
    }
    for (std::size_t i = 0; i < v.reasons.size(); ++i) os << (i ? "; " : "") << v.reasons[i];
    os << '\n';
  }
  return os.str();
}

void sdpa_forward(const SdpaOutputs& outputs, const TensorView& q, const TensorView& k, const TensorView& v,
                  const SdpaParams& params) {
  const core::SdpaProblem p = core::validate_forward(outputs, q, k, v, params);
  const core::ForwardArgs args{p, outputs};
  choose(params.backend, args, can_fwd).forward(args);
}

void sdpa_backward(const SdpaGrads& grads, const TensorView& dout, const TensorView& q, const TensorView& k,
                   const TensorView& v, const TensorView& out, const TensorView& lse, const SdpaParams& params,
                   const TensorView& dlse) {
  const core::SdpaProblem p = core::validate_backward(grads, dout, q, k, v, out, lse, params, dlse);
  const core::BackwardArgs args{p, grads, dout, out, lse, dlse};
  choose(params.backend, args, can_bwd).backward(args);
}

std::vector<BackendVerdict> explain(const SdpaOutputs& outputs, const TensorView& q, const TensorView& k,
                                    const TensorView& v, const SdpaParams& params) {
  const core::SdpaProblem p = core::validate_forward(outputs, q, k, v, params);
  return verdicts(core::ForwardArgs{p, outputs}, can_fwd);
}

std::vector<BackendVerdict> explain(const SdpaGrads& grads, const TensorView& dout, const TensorView& q,
                                    const TensorView& k, const TensorView& v, const TensorView& out,
                                    const TensorView& lse, const SdpaParams& params, const TensorView& dlse) {
  const core::SdpaProblem p = core::validate_backward(grads, dout, q, k, v, out, lse, params, dlse);
  return verdicts(core::BackwardArgs{p, grads, dout, out, lse, dlse}, can_bwd);
}

}  // namespace attn
