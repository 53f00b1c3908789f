// Name maps foreign <-> canonical (include/attn/io/name_maps.hpp; tables in docs/io.md). Each map
// is a list of one-to-one renames plus, for torch and GPT-2, the fused QKV tensors split in three
// (and stacked back), and a few buffers that are not parameters and are dropped.

#include "attn/io/name_maps.hpp"

#include <array>
#include <cctype>
#include <set>
#include <utility>
#include <vector>

#include "attn/error.hpp"
#include "io/tensor_copy.hpp"

namespace attn::io {

namespace {

using Renames = std::vector<std::pair<std::string, std::string>>;  // foreign (after prefix), canonical

struct MapTable {
  Renames renames;                      // the first foreign alias of a canonical name is the one written back
  std::vector<std::string> dropped;     // buffers, not parameters
  std::string fused_weight, fused_bias; // torch in_proj_*, GPT-2 c_attn.*
  bool fused_is_conv1d = false;         // GPT-2: [in, out], transposed
};

Renames linear_renames(const char* q, const char* k, const char* v, const char* o) {
  Renames r;
  for (auto [foreign, canonical] : {std::pair{q, "q_proj"}, {k, "k_proj"}, {v, "v_proj"}, {o, "out_proj"}}) {
    r.emplace_back(std::string(foreign) + ".weight", std::string(canonical) + ".weight");
    r.emplace_back(std::string(foreign) + ".bias", std::string(canonical) + ".bias");
  }
  return r;
}

MapTable table_of(NameMap map) {
  MapTable t;
  switch (map) {
    case NameMap::torch:
      t.renames = {{"q_proj_weight", "q_proj.weight"}, {"k_proj_weight", "k_proj.weight"},
                   {"v_proj_weight", "v_proj.weight"}, {"out_proj.weight", "out_proj.weight"},
                   {"out_proj.bias", "out_proj.bias"},  {"bias_k", "bias_k"},
                   {"bias_v", "bias_v"}};
      t.fused_weight = "in_proj_weight";
      t.fused_bias = "in_proj_bias";
      break;
    case NameMap::hf_bert: t.renames = linear_renames("self.query", "self.key", "self.value", "output.dense"); break;
    case NameMap::llama:
      t.renames = linear_renames("q_proj", "k_proj", "v_proj", "o_proj");
      t.dropped = {"rotary_emb.inv_freq"};
      break;
    case NameMap::gpt2:
      t.renames = {{"c_proj.bias", "out_proj.bias"}};  // c_proj.weight is transposed below
      t.fused_weight = "c_attn.weight";
      t.fused_bias = "c_attn.bias";
      t.fused_is_conv1d = true;
      t.dropped = {"bias", "masked_bias"};
      break;
    case NameMap::wqkvo:
      t.renames = {{"W_Q", "q_proj.weight"}, {"W_K", "k_proj.weight"}, {"W_V", "v_proj.weight"}, {"W_O", "out_proj.weight"},
                   {"b_Q", "q_proj.bias"},   {"b_K", "k_proj.bias"},   {"b_V", "v_proj.bias"},   {"b_O", "out_proj.bias"}};
      for (const char* x : {"Q", "K", "V", "O"}) {
        const std::string c = std::string(x) == "O" ? "out_proj" : std::string(1, char(std::tolower(x[0]))) + "_proj";
        t.renames.emplace_back(std::string("W_") + x + ".weight", c + ".weight");
        t.renames.emplace_back(std::string("W_") + x + ".bias", c + ".bias");
      }
      break;
  }
  return t;
}

const char* const kQkv[] = {"q_proj", "k_proj", "v_proj"};

// Rows of q, k, v in a fused tensor of `rows` rows.
std::array<std::int64_t, 3> qkv_rows(std::int64_t rows, std::int64_t q_dim, const std::string& key) {
  if (q_dim == 0) {
    ATTN_CHECK(rows % 3 == 0, shape, key, "has ", rows,
               " fused q/k/v rows, expected a multiple of 3 (give q_dim for GQA/MQA)");
    q_dim = rows / 3;
  }
  const std::int64_t kv = (rows - q_dim) / 2;
  ATTN_CHECK(q_dim > 0 && kv > 0 && q_dim + 2 * kv == rows, shape, key, "has ", rows,
             " fused q/k/v rows, expected q_dim = ", q_dim, " rows and two equal k/v parts");
  return {q_dim, kv, kv};
}

void split_fused(StateDict& out, const std::string& key, const Tensor& fused, bool is_bias, bool conv1d,
                 std::int64_t q_dim) {
  ATTN_CHECK(fused.view().rank == (is_bias ? 1 : 2), shape, key, "has shape ", fused.view().shape_string(), ", expected rank ",
             is_bias ? 1 : 2);
  const Tensor t = conv1d && !is_bias ? transpose2d(fused.view()) : Tensor();
  const TensorView& rows = conv1d && !is_bias ? t.view() : fused.view();
  const auto n = qkv_rows(rows.shape[0], q_dim, key);
  std::int64_t begin = 0;
  for (int p = 0; p < 3; ++p) {
    out.insert(std::string(kQkv[p]) + (is_bias ? ".bias" : ".weight"), slice_rows(rows, begin, begin + n[std::size_t(p)]));
    begin += n[std::size_t(p)];
  }
}

bool listed(const std::vector<std::string>& names, const std::string& n) {
  for (const auto& x : names)
    if (x == n) return true;
  return false;
}

}  // namespace

NameMap parse_name_map(std::string_view name) {
  for (NameMap m : {NameMap::torch, NameMap::hf_bert, NameMap::llama, NameMap::gpt2, NameMap::wqkvo})
    if (name == name_map_name(m)) return m;
  throw Error(ErrorKind::value, "names", detail::concat("is \"", name, "\", expected one of torch, hf_bert, llama, gpt2, wqkvo"));
}

const char* name_map_name(NameMap map) {
  switch (map) {
    case NameMap::torch: return "torch";
    case NameMap::hf_bert: return "hf_bert";
    case NameMap::llama: return "llama";
    case NameMap::gpt2: return "gpt2";
    case NameMap::wqkvo: return "wqkvo";
  }
  return "?";
}

StateDict to_canonical(const StateDict& foreign, NameMap map, const NameMapOptions& options) {
  const MapTable t = table_of(map);
  StateDict out;
  out.metadata = foreign.metadata;
  for (const auto& [full, tensor] : foreign.items()) {
    if (full.compare(0, options.prefix.size(), options.prefix) != 0) continue;
    const std::string key = full.substr(options.prefix.size());
    if (key.empty() || listed(t.dropped, key)) continue;
    if (key == t.fused_weight || key == t.fused_bias) {
      split_fused(out, full, tensor, key == t.fused_bias, t.fused_is_conv1d, options.q_dim);
      continue;
    }
    if (map == NameMap::gpt2 && key == "c_proj.weight") {
      ATTN_CHECK(tensor.view().rank == 2, shape, full, "has shape ", tensor.view().shape_string(), ", expected rank 2 [in, out]");
      out.insert("out_proj.weight", transpose2d(tensor.view()));
      continue;
    }
    std::string name = key;
    for (const auto& [from, to] : t.renames)
      if (from == key) name = to;
    out.insert_copy(name, tensor.view());
  }
  return out;
}

StateDict from_canonical(const StateDict& canonical, NameMap map, const NameMapOptions& options) {
  const MapTable t = table_of(map);
  StateDict out;
  out.metadata = canonical.metadata;
  const auto put = [&](const std::string& key, Tensor tensor) { out.insert(options.prefix + key, std::move(tensor)); };
  const auto parts = [&](const char* suffix) {
    std::vector<const Tensor*> p;
    for (const char* n : kQkv) p.push_back(canonical.find(std::string(n) + suffix));
    return p;
  };
  const std::vector<const Tensor*> w = parts(".weight"), b = parts(".bias");
  const auto all = [](const std::vector<const Tensor*>& p) { return p[0] && p[1] && p[2]; };
  const auto any = [](const std::vector<const Tensor*>& p) { return p[0] || p[1] || p[2]; };
  bool fuse_w = false, fuse_b = false;
  if (!t.fused_weight.empty()) {
    // torch fuses exactly when kdim = vdim = E: one input width (and, for GQA, equal k and v rows).
    const bool same = all(w) && w[0]->view().rank == 2 && w[1]->view().rank == 2 && w[2]->view().rank == 2 &&
                      w[1]->view().shape[1] == w[0]->view().shape[1] && w[2]->view().shape == w[1]->view().shape;
    fuse_w = t.fused_is_conv1d ? any(w) : same;
    fuse_b = any(b);
    ATTN_CHECK(!fuse_b || all(b), value, "state_dict", "has some but not all of q_proj.bias, k_proj.bias, v_proj.bias, "
               "expected all three or none (", name_map_name(map), " stores them fused in ", t.fused_bias, ")");
    ATTN_CHECK(!t.fused_is_conv1d || !fuse_w || all(w), value, "state_dict",
               "has some but not all of q_proj.weight, k_proj.weight, v_proj.weight, expected all three or none (gpt2 "
               "stores them fused in c_attn.weight)");
  }
  std::set<std::string> written;
  for (const auto& [name, tensor] : canonical.items()) {
    const bool is_w = name == "q_proj.weight" || name == "k_proj.weight" || name == "v_proj.weight";
    const bool is_b = name == "q_proj.bias" || name == "k_proj.bias" || name == "v_proj.bias";
    if ((is_w && fuse_w) || (is_b && fuse_b)) {
      const std::string& key = is_w ? t.fused_weight : t.fused_bias;
      if (!written.insert(key).second) continue;
      Tensor fused = cat_rows(is_w ? w : b);
      put(key, t.fused_is_conv1d && is_w ? transpose2d(fused.view()) : std::move(fused));
      continue;
    }
    if (map == NameMap::gpt2 && name == "out_proj.weight") {
      ATTN_CHECK(tensor.view().rank == 2, shape, name, "has shape ", tensor.view().shape_string(), ", expected rank 2");
      put("c_proj.weight", transpose2d(tensor.view()));
      continue;
    }
    std::string key = name;
    for (const auto& [from, to] : t.renames)
      if (to == name) {
        key = from;
        break;
      }
    put(key, clone(tensor.view()));
  }
  return out;
}

}  // namespace attn::io
