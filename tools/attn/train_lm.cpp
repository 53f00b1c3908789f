// `attn train lm` (docs/training.md): a tiny LLaMA-style decoder (nn::TrainableLlama: RoPE, GQA,
// pre-norm RMSNorm, SwiGLU) trained on the bytes of a public-domain text shipped in the repo
// (data/text/), next-byte cross-entropy, AdamW with warmup + cosine and clipping; a progress line
// (loss, tokens/s, ETA), the loss curve as CSV and PNG, bits per byte on the held-out end of the
// text against a unigram model, and a Hugging Face model directory (config.json +
// model.safetensors) that `attn generate` and attn.models.CausalLM load; --max-bpb is an exit code
// for tests.

#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>
#include <attn/error.hpp>
#include <attn/nn/generate.hpp>
#include <attn/nn/llama.hpp>
#include <attn/nn/llama_train.hpp>
#include <attn/nn/matmul_precision.hpp>
#include <attn/nn/optim.hpp>
#include <attn/nn/weight_cache.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "env.hpp"
#include "train_util.hpp"

#ifndef ATTN_DATA_FROM_BIN
#define ATTN_DATA_FROM_BIN "../share/attn"
#endif

namespace attn_cli {
namespace {

struct LmOptions {
  std::string text;  // empty: the shipped text (default_text)
  double holdout = 0.1;
  std::int64_t steps = 600, batch = 16, seq_len = 128, dim = 128, layers = 4, heads = 4, kv_heads = 2, ffn = 352;
  double lr = 3e-3, min_lr = 3e-4, weight_decay = 0.1, clip = 1.0, rope_theta = 10000.0;
  std::int64_t warmup = 50, eval_every = 100, eval_tokens = 32768, sample = 200;
  std::string prompt = "Anne Elliot", csv = "train_lm.csv", plot = "train_lm.png", save = "train_lm_model";
  bool checkpointing = false, bf16 = false, quiet = false;
  int threads = 0;
  std::uint64_t seed = 0;
  double max_bpb = -1;
};

// The shipped text, data/text/persuasion.txt: $ATTN_DATA_DIR/text/ when that is set, else
// <the binary's directory>/ATTN_DATA_FROM_BIN/text/ — the installed layout (<datadir>/attn seen from
// <bindir>), which the build tree copies beside its binary (tools/attn/CMakeLists.txt).
std::string default_text() {
  namespace fs = std::filesystem;
  const char* env = std::getenv("ATTN_DATA_DIR");
  fs::path path;
  std::string from;
  if (env != nullptr && *env != '\0') {
    path = fs::path(env) / "text" / "persuasion.txt";
    from = "ATTN_DATA_DIR";
  } else {
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    ATTN_CHECK(!ec, system, "--text", "not given, and the attn binary's own path cannot be read (/proc/self/exe: ",
               ec.message(), "), expected --text FILE or ATTN_DATA_DIR");
    path = (exe.parent_path() / ATTN_DATA_FROM_BIN / "text" / "persuasion.txt").lexically_normal();
    from = "the attn binary's data directory";
  }
  ATTN_CHECK(fs::exists(path), value, "--text", "not given, and the shipped text ", path.string(), " (from ", from,
             ") does not exist, expected --text FILE, or ATTN_DATA_DIR naming a directory with text/persuasion.txt");
  return path.string();
}

std::vector<std::int64_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ATTN_CHECK(in.good(), system, "--text", "\"", path, "\" cannot be opened, expected a readable text file");
  std::ostringstream s;
  s << in.rdbuf();
  std::vector<std::int64_t> bytes;
  for (unsigned char ch : s.str()) bytes.push_back(ch);
  return bytes;
}

// Bits per byte of the held-out bytes under the training bytes' frequencies (add-one smoothing).
double unigram_bpb(const std::vector<std::int64_t>& train, const std::vector<std::int64_t>& held) {
  std::vector<double> count(256, 1.0);
  for (std::int64_t b : train) count[static_cast<std::size_t>(b)] += 1;
  const double total = static_cast<double>(train.size()) + 256.0;
  double bits = 0;
  for (std::int64_t b : held) bits -= std::log2(count[static_cast<std::size_t>(b)] / total);
  return bits / static_cast<double>(held.size());
}

// Mean bits per byte of the model on consecutive windows of L + 1 held-out bytes (each window's
// first byte is context only), up to max_tokens predictions, B windows per forward.
double evaluate_bpb(attn::nn::TrainableLlama<float>& model, const std::vector<std::int64_t>& held, std::int64_t B,
                    std::int64_t L, std::int64_t max_tokens) {
  const std::int64_t windows = std::min<std::int64_t>((static_cast<std::int64_t>(held.size()) - 1) / L,
                                                      std::max<std::int64_t>(max_tokens / L, 1));
  ATTN_CHECK(windows >= 1, value, "--holdout", "leaves ", held.size(),
             " held-out bytes, expected at least --seq-len + 1 = ", L + 1);
  double nats = 0;
  std::int64_t n = 0;
  std::vector<std::int64_t> ids, targets;
  for (std::int64_t w0 = 0; w0 < windows; w0 += B) {
    const std::int64_t nb = std::min(B, windows - w0);
    ids.clear();
    targets.clear();
    for (std::int64_t w = w0; w < w0 + nb; ++w)
      for (std::int64_t l = 0; l < L; ++l) {
        ids.push_back(held[static_cast<std::size_t>(w * L + l)]);
        targets.push_back(held[static_cast<std::size_t>(w * L + l + 1)]);
      }
    const float* z = model.forward(ids.data(), nb, L);
    nats += attn::nn::cross_entropy(z, targets.data(), nb * L, 256, static_cast<float*>(nullptr)) *
            static_cast<double>(nb * L);
    n += nb * L;
  }
  return nats / static_cast<double>(n) / std::log(2.0);
}

int run_train_lm(const LmOptions& o) {
  attn::bench::ensure_bench_environment();
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
  omp_set_num_threads(threads);
  ATTN_CHECK(o.steps >= 1 && o.batch >= 1 && o.seq_len >= 2, value, "--steps", "steps = ", o.steps,
             ", batch = ", o.batch, ", seq-len = ", o.seq_len, ", expected ≥ 1, ≥ 1, ≥ 2");
  ATTN_CHECK(o.holdout > 0 && o.holdout < 1, value, "--holdout", "= ", o.holdout, ", expected in (0, 1)");
  const attn::nn::MatmulPrecisionGuard precision(o.bf16 ? attn::nn::MatmulPrecision::bf16
                                                        : attn::nn::float32_matmul_precision());
  // Only AdamW and checkpoint loads write the weights: bf16 copies are made once per step.
  const attn::nn::WeightCacheGuard weight_cache;

  const std::string text_path = o.text.empty() ? default_text() : o.text;
  const std::vector<std::int64_t> bytes = read_bytes(text_path);
  const std::int64_t split =
      static_cast<std::int64_t>(std::llround(static_cast<double>(bytes.size()) * (1.0 - o.holdout)));
  ATTN_CHECK(split > o.seq_len + 1, value, "--text", "has ", bytes.size(),
             " bytes, expected more than --seq-len + 1 = ", o.seq_len + 1, " for training after the held-out part");
  const std::vector<std::int64_t> train(bytes.begin(), bytes.begin() + split), held(bytes.begin() + split, bytes.end());
  const double unigram = unigram_bpb(train, held);

  attn::nn::LlamaConfig config;
  config.vocab_size = 256;
  config.hidden_size = o.dim;
  config.intermediate_size = o.ffn;
  config.num_hidden_layers = o.layers;
  config.num_attention_heads = o.heads;
  config.num_key_value_heads = o.kv_heads > 0 ? o.kv_heads : o.heads;
  config.rms_norm_eps = 1e-5;
  config.rope_theta = o.rope_theta;
  config.max_position_embeddings = o.seq_len;
  attn::nn::TrainableLlama<float> model(config, o.seed);
  model.set_checkpoint(o.checkpointing);
  attn::nn::AdamWConfig ac;
  ac.weight_decay = o.weight_decay;
  attn::nn::AdamW opt(model, ac);
  const attn::nn::LrSchedule sched{o.lr, o.warmup, o.steps, o.min_lr};

  std::printf(
      "attn train lm: %lld layers, E = %lld, %lld heads (%lld kv), SwiGLU %lld, RoPE θ %.0f, byte vocabulary 256, "
      "%lld parameters%s%s\n",
      static_cast<long long>(o.layers), static_cast<long long>(o.dim), static_cast<long long>(o.heads),
      static_cast<long long>(config.num_key_value_heads), static_cast<long long>(o.ffn), o.rope_theta,
      static_cast<long long>(model.num_parameters()), o.bf16 ? ", bf16 matmuls (fp32 master weights)" : "",
      o.checkpointing ? ", gradient checkpointing" : "");
  std::printf("text: %s, %zu bytes (%lld training, %zu held out); unigram model: %.3f bits per byte held out\n",
              text_path.c_str(), bytes.size(), static_cast<long long>(split), held.size(), unigram);
  std::printf(
      "batch %lld × %lld tokens, %lld steps, lr %.2g (warmup %lld, cosine to %.2g), weight decay %.2g, clip %.2g, "
      "%d threads\n",
      static_cast<long long>(o.batch), static_cast<long long>(o.seq_len), static_cast<long long>(o.steps), o.lr,
      static_cast<long long>(o.warmup), o.min_lr, o.weight_decay, o.clip, threads);
  std::fflush(stdout);

  FILE* csv = o.csv.empty() ? nullptr : std::fopen(o.csv.c_str(), "w");
  ATTN_CHECK(o.csv.empty() || csv, system, "--csv", "cannot write ", o.csv);
  if (csv) std::fprintf(csv, "step,lr,train_loss,train_bpb,eval_bpb,grad_norm,unigram_bpb,tokens_per_s,step_ms\n");
  const bool tty = isatty(fileno(stderr)) && !o.quiet;
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  const std::int64_t B = o.batch, L = o.seq_len, M = B * L;
  std::vector<std::int64_t> ids(static_cast<std::size_t>(M)), targets(static_cast<std::size_t>(M));
  double train_secs = 0, tokens = 0, last_eval = -1, ema = -1;
  std::int64_t saved_bytes = 0;
  std::vector<double> step_times;
  for (std::int64_t step = 0; step < o.steps; ++step) {
    std::mt19937_64 rng(o.seed * 1000003ull + static_cast<std::uint64_t>(step));  // data is a function of the step
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t start =
          static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(static_cast<std::int64_t>(train.size()) - L));
      for (std::int64_t l = 0; l < L; ++l) {
        ids[static_cast<std::size_t>(b * L + l)] = train[static_cast<std::size_t>(start + l)];
        targets[static_cast<std::size_t>(b * L + l)] = train[static_cast<std::size_t>(start + l + 1)];
      }
    }
    const auto ts = clock::now();
    const attn::nn::LmStepResult r =
        attn::nn::lm_train_step(model, opt, ids.data(), targets.data(), B, L, sched.at(step), o.clip);
    saved_bytes = std::max(saved_bytes, model.saved_bytes());
    const double loss = r.loss, gnorm = r.grad_norm, lr = sched.at(step);
    const double step_secs = std::chrono::duration<double>(clock::now() - ts).count();
    train_secs += step_secs;
    step_times.push_back(step_secs);
    tokens += static_cast<double>(M);
    ema = ema < 0 ? loss : 0.95 * ema + 0.05 * loss;
    const bool last = step + 1 == o.steps;
    const bool do_eval = last || (o.eval_every > 0 && (step + 1) % o.eval_every == 0);
    if (do_eval) last_eval = evaluate_bpb(model, held, B, L, o.eval_tokens);
    const double tps = tokens / std::max(train_secs, 1e-9);
    const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
    const double eta = elapsed / static_cast<double>(step + 1) * static_cast<double>(o.steps - step - 1);
    const double bpb = ema / std::log(2.0);
    if (csv)
      std::fprintf(csv, "%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.1f,%.3f\n", static_cast<long long>(step + 1), lr, loss,
                   loss / std::log(2.0), do_eval ? last_eval : -1.0, gnorm, unigram, tps, 1e3 * step_secs);
    if (tty) {
      const int width = 24, filled = static_cast<int>(width * (step + 1) / o.steps);
      std::fprintf(stderr, "\r%6lld/%lld [%s%s] loss %.3f (%.2f bits/byte) held-out %.2f  %.1fk tok/s  ETA %s ",
                   static_cast<long long>(step + 1), static_cast<long long>(o.steps), std::string(filled, '=').c_str(),
                   std::string(width - filled, ' ').c_str(), ema, bpb, last_eval >= 0 ? last_eval : unigram, tps / 1e3,
                   clock_string(eta).c_str());
    } else if (do_eval && !o.quiet) {
      std::printf("step %6lld/%lld  train %.3f nats (%.3f bits/byte)  held-out %.3f bits/byte  %.1fk tok/s  ETA %s\n",
                  static_cast<long long>(step + 1), static_cast<long long>(o.steps), ema, bpb, last_eval, tps / 1e3,
                  clock_string(eta).c_str());
      std::fflush(stdout);
    }
  }
  if (tty) std::fprintf(stderr, "\n");
  if (csv) std::fclose(csv);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::vector<double> sorted = step_times;
  std::sort(sorted.begin(), sorted.end());
  std::printf("held-out: %.4f bits per byte (unigram %.4f)\n", last_eval, unigram);
  std::printf(
      "%lld steps in %.1f s (%.1f ms/step forward+backward+AdamW, median %.1f ms, %.1fk tokens/s), activations kept "
      "%.1f MiB, peak RSS %.1f MiB\n",
      static_cast<long long>(o.steps), train_secs, 1e3 * train_secs / static_cast<double>(o.steps),
      1e3 * sorted[sorted.size() / 2], tokens / std::max(train_secs, 1e-9) / 1e3,
      static_cast<double>(saved_bytes) / (1 << 20), static_cast<double>(ru.ru_maxrss) / 1024.0);
  if (!o.save.empty()) {
    attn::nn::save_llama_pretrained(o.save, config, model);
    std::printf("model: %s (config.json + model.safetensors; attn generate --model %s)\n", o.save.c_str(),
                o.save.c_str());
    if (o.sample > 0 && !o.prompt.empty()) {  // greedy text from the saved directory, through the inference model
      const attn::nn::MatmulPrecisionGuard f32(attn::nn::MatmulPrecision::f32);
      attn::nn::LlamaForCausalLM lm = attn::nn::LlamaForCausalLM::from_pretrained(o.save);
      std::vector<std::int64_t> prompt;
      for (unsigned char ch : o.prompt) prompt.push_back(ch);
      attn::nn::GenerateConfig g;
      g.max_new_tokens = o.sample;
      std::string text = o.prompt;
      attn::nn::generate(lm, prompt, g, [&](std::int64_t id) {
        text.push_back(static_cast<char>(id));
        return true;
      });
      std::printf("sample (greedy, %lld bytes):\n%s\n", static_cast<long long>(o.sample), text.c_str());
    }
  }
  if (csv && !o.plot.empty()) {
    run_gnuplot(o.plot,
                "set key top right\nset grid\nset xlabel 'step'\nset ylabel 'bits per byte'\n"
                "set title 'attn train lm'\nplot '" +
                    o.csv +
                    "' every ::1 using 1:4 with lines title 'train (batch)', '' every ::1 using 1:($5 > 0 "
                    "? $5 : 1/0) with linespoints title 'held out', '' every ::1 using 1:7 with lines dt 2 "
                    "title 'unigram'\n");
    std::printf("loss curve: %s, %s\n", o.csv.c_str(), o.plot.c_str());
  }
  if (o.max_bpb > 0 && !(last_eval <= o.max_bpb)) {
    std::printf("FAIL: held-out %.4f bits per byte, above --max-bpb %.4f\n", last_eval, o.max_bpb);
    return 1;
  }
  return 0;
}

}  // namespace

void add_train_lm(CLI::App& train) {
  auto o = std::make_shared<LmOptions>();
  auto* cmd = train.add_subcommand("lm", "A tiny LLaMA-style byte-level language model on a public-domain text");
  cmd->add_option("--text", o->text,
                  "Training text (bytes are the tokens); default: the shipped data/text/persuasion.txt, found in "
                  "$ATTN_DATA_DIR/text or the installed share/attn/text beside the binary");
  cmd->add_option("--holdout", o->holdout, "Fraction at the end of the text held out for bits per byte")
      ->capture_default_str();
  cmd->add_option("--steps", o->steps, "Training steps")->capture_default_str();
  cmd->add_option("--batch", o->batch, "Sequences per step")->capture_default_str();
  cmd->add_option("--seq-len", o->seq_len, "Tokens per sequence")->capture_default_str();
  cmd->add_option("--dim", o->dim, "Hidden size E")->capture_default_str();
  cmd->add_option("--layers", o->layers, "Decoder layers")->capture_default_str();
  cmd->add_option("--heads", o->heads, "Query heads")->capture_default_str();
  cmd->add_option("--kv-heads", o->kv_heads, "Key/value heads (GQA; divides --heads)")->capture_default_str();
  cmd->add_option("--ffn", o->ffn, "SwiGLU intermediate size")->capture_default_str();
  cmd->add_option("--rope-theta", o->rope_theta, "RoPE base")->capture_default_str();
  cmd->add_option("--lr", o->lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr", o->min_lr, "Learning rate at the end of the cosine")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "Linear warmup steps")->capture_default_str();
  cmd->add_option("--weight-decay", o->weight_decay, "AdamW decoupled weight decay (matrices and embeddings)")
      ->capture_default_str();
  cmd->add_option("--clip", o->clip, "Gradient clipping (global L2 norm)")->capture_default_str();
  cmd->add_option("--eval-every", o->eval_every, "Held-out bits per byte every N steps")->capture_default_str();
  cmd->add_option("--eval-tokens", o->eval_tokens, "Held-out predictions per evaluation (at most)")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "Threads (default: all)");
  cmd->add_option("--seed", o->seed, "Seed of weights and data")->capture_default_str();
  cmd->add_flag("--checkpointing", o->checkpointing, "Gradient checkpointing per layer");
  cmd->add_flag("--bf16", o->bf16, "bf16 matmuls (oneDNN) with fp32 master weights and gradients");
  cmd->add_option("--csv", o->csv, "Loss curve CSV ('' = none)")->capture_default_str();
  cmd->add_option("--plot", o->plot, "Loss curve PNG via gnuplot ('' = none)")->capture_default_str();
  cmd->add_option("--save", o->save, "Model directory written at the end ('' = none)")->capture_default_str();
  cmd->add_option("--prompt", o->prompt, "Prompt of the greedy sample printed at the end")->capture_default_str();
  cmd->add_option("--sample", o->sample, "Bytes of that sample (0 = none)")->capture_default_str();
  cmd->add_option("--max-bpb", o->max_bpb, "Exit 1 unless held-out bits per byte ≤ this");
  cmd->add_flag("--quiet", o->quiet, "No progress output");
  cmd->callback([o] { exit_code() = run_train_lm(*o); });
}

}  // namespace attn_cli
