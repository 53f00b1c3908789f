// attn::models::BertEncoder and SentenceEncoder on a small random BERT written here (config.json,
// model.safetensors, vocab.txt): the packed fp32 forward against a composition of separately
// tested attn::nn modules in fp64 (post-norm TransformerEncoder with key padding, LayerNorm), the
// sentence pipeline against the encoder + pooling written in the test, batch-size and order
// independence, and the errors of a bad model directory. (Against sentence-transformers on the
// real all-MiniLM-L6-v2: python/tests/test_sentence.py.)

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/io/safetensors.hpp"
#include "attn/models/bert.hpp"
#include "attn/models/sentence_encoder.hpp"
#include "attn/nn/norm.hpp"
#include "attn/nn/transformer.hpp"
#include "models/batch_split.hpp"
#include "models/bf16_matmul.hpp"

namespace {

namespace fs = std::filesystem;
using attn::models::BertConfig;
using attn::models::BertEncoder;
using attn::models::SentenceEncoder;
using attn::nn::MatmulPrecision;

constexpr std::int64_t V = 24, E = 24, H = 3, F = 40, NL = 2, P = 40, TV = 2;

struct Checkpoint {
  std::map<std::string, std::vector<std::int64_t>> shapes;
  std::map<std::string, std::vector<float>> values;
};

Checkpoint random_checkpoint(std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  Checkpoint c;
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape, float scale, float offset = 0) {
    std::int64_t n = 1;
    for (auto s : shape) n *= s;
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = offset + scale * n01(rng);
    c.shapes[name] = shape;
    c.values[name] = v;
  };
  add("embeddings.word_embeddings.weight", {V, E}, 0.5f);
  add("embeddings.position_embeddings.weight", {P, E}, 0.5f);
  add("embeddings.token_type_embeddings.weight", {TV, E}, 0.5f);
  add("embeddings.LayerNorm.weight", {E}, 0.1f, 1.0f);
  add("embeddings.LayerNorm.bias", {E}, 0.1f);
  add("embeddings.position_ids", {1, P}, 0.0f);  // a buffer transformers saves; not read
  for (int l = 0; l < NL; ++l) {
    const std::string p = "encoder.layer." + std::to_string(l) + ".";
    for (const char* m : {"query", "key", "value"}) {
      add(p + "attention.self." + m + ".weight", {E, E}, 0.3f);
      add(p + "attention.self." + m + ".bias", {E}, 0.1f);
    }
    add(p + "attention.output.dense.weight", {E, E}, 0.2f);
    add(p + "attention.output.dense.bias", {E}, 0.1f);
    add(p + "attention.output.LayerNorm.weight", {E}, 0.1f, 1.0f);
    add(p + "attention.output.LayerNorm.bias", {E}, 0.1f);
    add(p + "intermediate.dense.weight", {F, E}, 0.3f);
    add(p + "intermediate.dense.bias", {F}, 0.1f);
    add(p + "output.dense.weight", {E, F}, 0.2f);
    add(p + "output.dense.bias", {E}, 0.1f);
    add(p + "output.LayerNorm.weight", {E}, 0.1f, 1.0f);
    add(p + "output.LayerNorm.bias", {E}, 0.1f);
  }
  return c;
}

const char* kConfig = R"({"model_type": "bert", "hidden_act": "gelu", "vocab_size": 24, "hidden_size": 24,
  "num_hidden_layers": 2, "num_attention_heads": 3, "intermediate_size": 40, "max_position_embeddings": 40,
  "type_vocab_size": 2, "layer_norm_eps": 1e-12, "position_embedding_type": "absolute"})";

const char* kVocab[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "the",  "cat",   "sat",   "on",
                        "mat",   "a",     "dog",   "ran",   "##s",  "##ing", ".",     ",",
                        "!",     "big",   "small", "red",   "blue", "un",    "##der", "café"};

void write_text(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

struct ModelDir {
  fs::path dir;
  Checkpoint ckpt;
  explicit ModelDir(const std::string& name, std::uint32_t seed = 1) : ckpt(random_checkpoint(seed)) {
    dir = fs::temp_directory_path() / ("attn_models_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir / "1_Pooling");
    write_text(dir / "config.json", kConfig);
    std::string vocab;
    for (const char* t : kVocab) vocab += std::string(t) + "\n";
    write_text(dir / "vocab.txt", vocab);
    write_text(dir / "sentence_bert_config.json", R"({"max_seq_length": 12, "do_lower_case": false})");
    write_text(dir / "1_Pooling" / "config.json",
               R"({"word_embedding_dimension": 24, "pooling_mode_mean_tokens": true})");
    write_text(
        dir / "modules.json",
        R"([{"type": "sentence_transformers.models.Transformer"}, {"type": "sentence_transformers.models.Pooling"},
                   {"type": "sentence_transformers.models.Normalize"}])");
    save();
  }
  void save(const std::string& skip = "", const std::string& reshape = "") {
    std::vector<std::pair<std::string, attn::TensorView>> views;
    for (auto& [name, v] : ckpt.values) {
      if (name == skip) continue;
      std::vector<std::int64_t> s = ckpt.shapes[name];
      if (name == reshape) s = {static_cast<std::int64_t>(v.size())};
      if (s.size() == 1)
        views.emplace_back(name, attn::TensorView(v.data(), attn::DType::f32, {s[0]}));
      else
        views.emplace_back(name, attn::TensorView(v.data(), attn::DType::f32, {s[0], s[1]}));
    }
    attn::io::save_safetensors((dir / "model.safetensors").string(), views);
  }
  ~ModelDir() { fs::remove_all(dir); }
};

// The encoder written with attn::nn in fp64: embeddings summed here, nn::LayerNorm, a post-norm
// nn::TransformerEncoder (BERT's layer) on the padded batch with key_lengths.
std::vector<double> reference_hidden(const Checkpoint& c, const std::vector<std::vector<std::int32_t>>& seqs,
                                     std::int64_t& L) {
  const std::int64_t B = static_cast<std::int64_t>(seqs.size());
  L = 0;
  for (const auto& s : seqs) L = std::max<std::int64_t>(L, static_cast<std::int64_t>(s.size()));
  const auto& word = c.values.at("embeddings.word_embeddings.weight");
  const auto& pos = c.values.at("embeddings.position_embeddings.weight");
  const auto& type = c.values.at("embeddings.token_type_embeddings.weight");
  std::vector<double> x(static_cast<std::size_t>(B * L * E), 0.0), y(x.size());
  std::vector<std::int64_t> lengths;
  for (std::int64_t b = 0; b < B; ++b) {
    lengths.push_back(static_cast<std::int64_t>(seqs[b].size()));
    for (std::int64_t t = 0; t < L; ++t)
      for (std::int64_t e = 0; e < E; ++e) {
        const std::int32_t id = t < lengths[b] ? seqs[b][t] : 0;
        x[(b * L + t) * E + e] = double(word[id * E + e]) + double(pos[t * E + e]) + double(type[e]);
      }
  }
  attn::nn::LayerNorm<double> ln(E, 1e-12);
  auto set = [&](const attn::nn::Parameter& p, const std::string& name) {
    const auto& v = c.values.at(name);
    EXPECT_EQ(p.value.numel(), static_cast<std::int64_t>(v.size())) << name;
    for (std::size_t i = 0; i < v.size(); ++i) static_cast<double*>(p.value.data)[i] = v[i];
  };
  set(ln.parameter("weight"), "embeddings.LayerNorm.weight");
  set(ln.parameter("bias"), "embeddings.LayerNorm.bias");
  ln.forward(x.data(), B * L, y.data());

  attn::nn::EncoderConfig ec;
  ec.layer.embed_dim = E;
  ec.layer.num_heads = H;
  ec.layer.ffn_dim = F;
  ec.layer.norm_first = false;
  ec.layer.norm_eps = 1e-12;
  ec.num_layers = NL;
  ec.final_norm = false;
  attn::nn::TransformerEncoder<double> enc(ec);
  enc.set_training(false);
  for (int l = 0; l < NL; ++l) {
    const std::string ours = "layers." + std::to_string(l) + ".", hf = "encoder.layer." + std::to_string(l) + ".";
    const std::pair<const char*, const char*> names[] = {{"self_attn.q_proj.weight", "attention.self.query.weight"},
                                                         {"self_attn.q_proj.bias", "attention.self.query.bias"},
                                                         {"self_attn.k_proj.weight", "attention.self.key.weight"},
                                                         {"self_attn.k_proj.bias", "attention.self.key.bias"},
                                                         {"self_attn.v_proj.weight", "attention.self.value.weight"},
                                                         {"self_attn.v_proj.bias", "attention.self.value.bias"},
                                                         {"self_attn.out_proj.weight", "attention.output.dense.weight"},
                                                         {"self_attn.out_proj.bias", "attention.output.dense.bias"},
                                                         {"norm1.weight", "attention.output.LayerNorm.weight"},
                                                         {"norm1.bias", "attention.output.LayerNorm.bias"},
                                                         {"linear1.weight", "intermediate.dense.weight"},
                                                         {"linear1.bias", "intermediate.dense.bias"},
                                                         {"linear2.weight", "output.dense.weight"},
                                                         {"linear2.bias", "output.dense.bias"},
                                                         {"norm2.weight", "output.LayerNorm.weight"},
                                                         {"norm2.bias", "output.LayerNorm.bias"}};
    for (auto [o, h] : names) set(enc.parameter(ours + o), hf + h);
  }
  attn::nn::EncoderCall call;
  call.key_lengths = lengths;
  const double* out = enc.forward(y.data(), B, L, call);
  return std::vector<double>(out, out + B * L * E);
}

std::vector<std::vector<std::int32_t>> random_seqs(std::uint32_t seed, std::vector<std::int64_t> lengths) {
  std::mt19937 rng(seed);
  std::vector<std::vector<std::int32_t>> s;
  for (auto n : lengths) {
    std::vector<std::int32_t> ids;
    for (std::int64_t t = 0; t < n; ++t) ids.push_back(static_cast<std::int32_t>(rng() % V));
    s.push_back(ids);
  }
  return s;
}

TEST(BertEncoder, PackedForwardEqualsNnCompositionInFp64) {
  const ModelDir m("forward");
  const BertEncoder enc(m.dir.string());
  EXPECT_EQ(enc.config().num_hidden_layers, NL);
  EXPECT_EQ(enc.dim(), E);
  // Odd lengths, one of 1, one at max_position_embeddings.
  const auto seqs = random_seqs(7, {7, 1, 40, 13, 2, 33});
  std::vector<std::int32_t> packed;
  std::vector<std::int64_t> cu{0};
  for (const auto& s : seqs) {
    packed.insert(packed.end(), s.begin(), s.end());
    cu.push_back(static_cast<std::int64_t>(packed.size()));
  }
  // Both ways of sharing a batch run below (src/models/batch_split.hpp): 2 threads own whole
  // sequences, 3 threads split the rows (no 3 contiguous shares within 10 % of a third).
  EXPECT_TRUE(attn::models::detail::split_batch(cu, 2, E, F).owned);
  EXPECT_FALSE(attn::models::detail::split_batch(cu, 3, E, F).owned);
  for (int threads : {1, 2, 3}) {
    std::vector<float> hidden(packed.size() * E);
    enc.forward(packed.data(), cu, hidden.data(), threads);
    std::int64_t L = 0;
    const std::vector<double> ref = reference_hidden(m.ckpt, seqs, L);
    double worst = 0;
    for (std::size_t b = 0; b < seqs.size(); ++b)
      for (std::int64_t t = 0; t < static_cast<std::int64_t>(seqs[b].size()); ++t)
        for (std::int64_t e = 0; e < E; ++e) {
          const double got = hidden[(cu[b] + t) * E + e], want = ref[(b * L + t) * E + e];
          worst = std::max(worst, std::abs(got - want));
        }
    EXPECT_LT(worst, 2e-5) << "threads " << threads;  // LayerNorm outputs are O(1)
  }
}

// The threads' shares of a batch: contiguous, non-empty, covering every sequence, each within
// kImbalance of the even share when owned; rows split otherwise.
TEST(BertEncoder, BatchSplitSharesWholeSequencesOrRows) {
  using attn::models::detail::split_batch;
  const auto cost = [](std::int64_t n) { return 2.0 * n * (4 * E * E + 2 * E * F) + 4.0 * n * n * E; };
  for (const std::vector<std::int64_t>& lens :
       std::vector<std::vector<std::int64_t>>{{20, 19, 21, 20, 18, 22}, {40, 40, 39, 3, 2, 2, 1, 1}, {5}, {30, 1}}) {
    std::vector<std::int64_t> cu{0};
    for (auto n : lens) cu.push_back(cu.back() + n);
    for (int nt : {1, 2, 3, 4}) {
      const auto sp = split_batch(cu, nt, E, F);
      const auto nseq = static_cast<std::int64_t>(lens.size());
      if (nt == 1) {
        EXPECT_TRUE(sp.owned);
      }
      if (nseq < nt) {
        EXPECT_FALSE(sp.owned) << nseq << " sequences, " << nt << " threads";
      }
      if (!sp.owned) continue;
      ASSERT_EQ(sp.seq.size(), static_cast<std::size_t>(nt) + 1);
      EXPECT_EQ(sp.seq.front(), 0);
      EXPECT_EQ(sp.seq.back(), nseq);
      double total = 0;
      for (auto n : lens) total += cost(n);
      for (int t = 0; t < nt; ++t) {
        EXPECT_LT(sp.seq[t], sp.seq[t + 1]) << "share " << t << " empty";
        double share = 0;
        for (auto s = sp.seq[t]; s < sp.seq[t + 1]; ++s) share += cost(lens[static_cast<std::size_t>(s)]);
        EXPECT_LE(share, attn::models::detail::BatchSplit::kImbalance * total / nt);
      }
    }
  }
  // Equal lengths share; one long sequence among short ones does not.
  EXPECT_TRUE(split_batch({0, 20, 39, 60, 80, 98, 120}, 2, E, F).owned);
  EXPECT_FALSE(split_batch({0, 30, 31}, 2, E, F).owned);
}

TEST(BertEncoder, BertPrefixedNamesLoadToo) {
  ModelDir m("prefixed");
  Checkpoint renamed;
  for (auto& [k, v] : m.ckpt.values) {
    renamed.values["bert." + k] = v;
    renamed.shapes["bert." + k] = m.ckpt.shapes[k];
  }
  const Checkpoint original = m.ckpt;
  m.ckpt = renamed;
  m.save();
  const BertEncoder prefixed(m.dir.string());
  m.ckpt = original;
  m.save();
  const BertEncoder plain(m.dir.string());
  const std::vector<std::int32_t> ids{2, 4, 5, 3};
  std::vector<float> a(4 * E), b(4 * E);
  prefixed.forward(ids.data(), {0, 4}, a.data());
  plain.forward(ids.data(), {0, 4}, b.data());
  EXPECT_EQ(a, b);
}

TEST(BertEncoder, BadCallsAreErrors) {
  const ModelDir m("calls");
  const BertEncoder enc(m.dir.string());
  std::vector<std::int32_t> ids(50, 4);
  std::vector<float> out(50 * E);
  EXPECT_THROW(enc.forward(ids.data(), {0, 41}, out.data()), attn::Error);    // > max_position_embeddings
  EXPECT_THROW(enc.forward(ids.data(), {0, 0, 3}, out.data()), attn::Error);  // empty sequence
  ids[2] = V;
  try {
    enc.forward(ids.data(), {0, 3}, out.data());
    FAIL() << "no error for an id out of range";
  } catch (const attn::Error& e) {
    EXPECT_NE(std::string(e.what()).find("ids[2] = 24, expected 0 ≤ id < 24"), std::string::npos) << e.what();
  }
}

// Embeddings of the pipeline written here: tokenizer ids, the encoder, mean, L2 normalisation.
std::vector<float> expected_embedding(const SentenceEncoder& s, const std::string& text) {
  const auto ids = s.tokenizer().encode(text, s.info().max_seq_length);
  std::vector<float> hidden(ids.size() * E), out(E, 0.0f);
  s.encoder().forward(ids.data(), {0, static_cast<std::int64_t>(ids.size())}, hidden.data(), 1);
  double ss = 0;
  for (std::int64_t e = 0; e < E; ++e) {
    double sum = 0;
    for (std::size_t t = 0; t < ids.size(); ++t) sum += hidden[t * E + e];
    out[e] = static_cast<float>(sum / double(ids.size()));
    ss += double(out[e]) * out[e];
  }
  for (auto& v : out) v = static_cast<float>(v / std::sqrt(ss));
  return out;
}

TEST(SentenceEncoder, BatchesSortedPackedAndRestoredInOrder) {
  const ModelDir m("sentences");
  const SentenceEncoder s(m.dir.string());
  EXPECT_EQ(s.info().max_seq_length, 12);
  EXPECT_TRUE(s.info().normalize);
  const std::vector<std::string> texts = {"the cat sat on the mat.",
                                          "a dog",
                                          "",
                                          "big red dogs running under the blue mat, the small cat sat!!! and more",
                                          "Café, CAFÉ",
                                          "the cat sat on the mat."};
  const std::vector<float> all = s.encode(texts, 32, 2);
  ASSERT_EQ(all.size(), texts.size() * E);
  for (std::int64_t batch : {1, 2, 4}) {
    const std::vector<float> b = s.encode(texts, batch, 1);
    for (std::size_t i = 0; i < all.size(); ++i) EXPECT_NEAR(b[i], all[i], 1e-6) << "batch " << batch;
  }
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const std::vector<float> want = expected_embedding(s, texts[i]);
    for (std::int64_t e = 0; e < E; ++e) EXPECT_NEAR(all[i * E + e], want[e], 1e-6) << texts[i];
  }
  EXPECT_TRUE(s.encode({}, 32).empty());
  EXPECT_THROW(s.encode(texts, 0), attn::Error);
}

void expect_error(const fs::path& dir, const std::string& fragment) {
  try {
    const SentenceEncoder s(dir.string());
    ADD_FAILURE() << "no error, expected one containing: " << fragment;
  } catch (const attn::Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(SentenceEncoder, BadModelDirectoriesNameTheProblem) {
  ModelDir m("errors");
  const fs::path d = m.dir;
  expect_error(d / "nope", "nope: is not a directory");
  fs::rename(d / "vocab.txt", d / "vocab.bak");
  expect_error(d, "vocab.txt: does not exist, expected the model's WordPiece vocab there");
  fs::rename(d / "vocab.bak", d / "vocab.txt");

  m.save("encoder.layer.1.output.dense.bias");
  expect_error(d, "has no tensor \"encoder.layer.1.output.dense.bias\"");
  m.save("", "encoder.layer.0.intermediate.dense.weight");
  expect_error(d, "encoder.layer.0.intermediate.dense.weight: has shape [960]");
  write_text(d / "model.safetensors", "not a safetensors file");
  expect_error(d, "model.safetensors");
  fs::remove(d / "model.safetensors");
  expect_error(d, "model.safetensors: does not exist");
  m.save();

  std::string cfg = kConfig;
  write_text(d / "config.json", cfg.replace(cfg.find("\"bert\""), 6, "\"gpt2\""));
  expect_error(d, "model_type = \"gpt2\", expected \"bert\"");
  write_text(d / "config.json", "{\"model_type\": \"bert\"}");
  expect_error(d, "has no \"vocab_size\"");
  write_text(d / "config.json", "{not json");
  expect_error(d, "config.json: is not valid JSON");
  fs::remove(d / "config.json");
  expect_error(d, "config.json: cannot open the file");
  write_text(d / "config.json", kConfig);

  write_text(d / "1_Pooling" / "config.json", R"({"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false})");
  expect_error(d, "pooling_mode_cls_token = true, expected mean pooling only");
  write_text(d / "1_Pooling" / "config.json", R"({"pooling_mode_mean_tokens": true})");
  write_text(d / "sentence_bert_config.json", R"({"max_seq_length": 4000})");
  expect_error(d, "max_seq_length = 4000, expected an integer in [2, max_position_embeddings = 40]");
}

// Whether the bf16 mode can run here (oneDNN with a bf16 kernel for this CPU); when it cannot, the
// constructor's error is checked instead.
bool bf16_mode_runs(const fs::path& dir) {
  const std::string impl = attn::models::detail::bf16_matmul_probe(3 * E, E);
  if (attn::nn::bf16_matmul_available() && impl.rfind("ref", 0) != 0 && impl.rfind("none", 0) != 0) return true;
  try {
    const SentenceEncoder s(dir.string(), MatmulPrecision::bf16);
    ADD_FAILURE() << "bf16 mode without a bf16 kernel (" << impl << ") gave no error";
  } catch (const attn::Error& e) {
    EXPECT_EQ(e.kind(), attn::ErrorKind::unsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find("precision: bf16"), std::string::npos) << e.what();
  }
  return false;
}

double cosine(const float* a, const float* b, std::int64_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

TEST(BertEncoder, Bf16ModeNearTheFp64ReferenceOnEveryThreadCount) {
  const ModelDir m("bf16");
  if (!bf16_mode_runs(m.dir)) GTEST_SKIP() << "no bf16 matmul kernel here";
  const BertEncoder enc(m.dir.string(), MatmulPrecision::bf16), f32(m.dir.string());
  EXPECT_EQ(enc.precision(), MatmulPrecision::bf16);
  EXPECT_EQ(f32.precision(), MatmulPrecision::f32);
  EXPECT_EQ(enc.gemm_impl().rfind("onednn ", 0), 0u) << enc.gemm_impl();
  // Lengths below, at and across the GEMM blocks (64 rows) once split between 1–3 threads.
  const auto seqs = random_seqs(9, {7, 1, 40, 13, 2, 33, 40, 40, 40, 17});
  std::vector<std::int32_t> packed;
  std::vector<std::int64_t> cu{0};
  for (const auto& s : seqs) {
    packed.insert(packed.end(), s.begin(), s.end());
    cu.push_back(static_cast<std::int64_t>(packed.size()));
  }
  std::int64_t L = 0;
  const std::vector<double> ref = reference_hidden(m.ckpt, seqs, L);
  std::vector<float> one(packed.size() * E), fp32(packed.size() * E);
  f32.forward(packed.data(), cu, fp32.data(), 1);
  for (int threads : {1, 2, 3}) {
    std::vector<float> hidden(packed.size() * E);
    enc.forward(packed.data(), cu, hidden.data(), threads);
    if (threads == 1) one = hidden;
    double worst = 0, from_fp32 = 0, across = 0;
    for (std::size_t b = 0; b < seqs.size(); ++b)
      for (std::int64_t t = 0; t < static_cast<std::int64_t>(seqs[b].size()); ++t)
        for (std::int64_t e = 0; e < E; ++e) {
          const std::size_t i = static_cast<std::size_t>((cu[b] + t) * E + e);
          worst = std::max(worst, std::abs(hidden[i] - ref[(b * L + t) * E + e]));
          from_fp32 = std::max(from_fp32, double(std::abs(hidden[i] - fp32[i])));
          across = std::max(across, double(std::abs(hidden[i] - one[i])));
        }
    EXPECT_LT(worst, 0.1) << "threads " << threads;  // bf16 operands: ~3 significant digits per product
    EXPECT_GT(from_fp32, 1e-4) << "the bf16 mode gave the fp32 numbers: were its GEMMs bf16?";
    EXPECT_LE(across, 1e-5) << "threads " << threads << " against 1";
  }
}

TEST(SentenceEncoder, Bf16ModeCosineToFp32AndBatchIndependent) {
  const ModelDir m("bf16_sentences");
  if (!bf16_mode_runs(m.dir)) GTEST_SKIP() << "no bf16 matmul kernel here";
  const SentenceEncoder s(m.dir.string(), MatmulPrecision::bf16), f32(m.dir.string());
  EXPECT_EQ(s.precision(), MatmulPrecision::bf16);
  const std::vector<std::string> texts = {"the cat sat on the mat.",
                                          "a dog",
                                          "",
                                          "big red dogs running under the blue mat, the small cat sat!!! and more",
                                          "Café, CAFÉ",
                                          "the cat sat on the mat."};
  const std::vector<float> all = s.encode(texts, 32, 2), ref = f32.encode(texts, 32, 2);
  for (std::size_t i = 0; i < texts.size(); ++i)
    EXPECT_GE(cosine(all.data() + i * E, ref.data() + i * E, E), 0.999) << texts[i];
  for (std::int64_t batch : {1, 2, 4}) {
    const std::vector<float> b = s.encode(texts, batch, 1);
    for (std::size_t i = 0; i < all.size(); ++i) EXPECT_NEAR(b[i], all[i], 1e-5) << "batch " << batch;
  }
}

#if defined(ATTN_TEST_MODEL_DIR) && defined(ATTN_TEST_CORPUS)
// The packaged all-MiniLM-L6-v2 on the text corpus of the tokenizer tests (many scripts, accents,
// CJK, emoji, control characters, inputs truncated at 256 tokens): every bf16 embedding within
// cosine similarity 0.999 of the fp32 one (which equals sentence-transformers). Every eighth line
// and three truncated ones, to stay quick: ctest runs OpenBLAS's generic kernel (the CLI and Python
// pick the CPU's); python/tests/test_sentence.py checks every line.
TEST(SentenceEncoder, Bf16PackagedModelCosineToFp32OnTheCorpus) {
  if (!bf16_mode_runs(ATTN_TEST_MODEL_DIR)) GTEST_SKIP() << "no bf16 matmul kernel here";
  std::ifstream in(ATTN_TEST_CORPUS, std::ios::binary);
  ASSERT_TRUE(in.good()) << ATTN_TEST_CORPUS;
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  ASSERT_GE(lines.size(), 200u);
  const SentenceEncoder b(ATTN_TEST_MODEL_DIR, MatmulPrecision::bf16), f(ATTN_TEST_MODEL_DIR);
  std::vector<std::string> picked;
  std::size_t truncated = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const bool is_long =
        static_cast<std::int64_t>(f.tokenizer().tokenize(lines[i], "line").size()) + 2 > f.info().max_seq_length;
    if (i % 8 == 0 || (is_long && truncated < 3)) {
      picked.push_back(lines[i]);
      truncated += is_long;
    }
  }
  ASSERT_GE(truncated, 3u);
  lines = picked;
  const std::int64_t d = f.dim();
  const std::vector<float> eb = b.encode(lines, 32), ef = f.encode(lines, 32);
  double lowest = 1;
  std::size_t worst = 0;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const double c = cosine(eb.data() + i * d, ef.data() + i * d, d);
    if (c < lowest) lowest = c, worst = i;
  }
  EXPECT_GE(lowest, 0.999) << "line " << worst << ": " << lines[worst];
  std::printf("bf16 vs fp32 on %zu lines (%zu truncated): lowest cosine %.6f (line %zu), GEMMs on %s\n", lines.size(),
              truncated, lowest, worst, b.encoder().gemm_impl().c_str());
}
#endif

}  // namespace
