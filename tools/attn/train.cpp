// `attn train regression`: trains nn::RegressionTransformer with AdamW on the synthetic task of
// regression_task.hpp (docs/training.md): warmup + cosine schedule, gradient clipping, a progress
// line (loss, tokens/s, ETA), the loss curve as CSV and PNG (gnuplot), safetensors checkpoints, and
// --max-ratio / --min-ratio exit codes for tests (the eval loss over the trivial loss).

#include <omp.h>
#include <sys/resource.h>
#include <unistd.h>
#include <attn/error.hpp>
#include <attn/io/checkpoint.hpp>
#include <attn/nn/matmul_precision.hpp>
#include <attn/nn/optim.hpp>
#include <attn/nn/regression.hpp>
#include <attn/nn/weight_cache.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "commands.hpp"
#include "env.hpp"
#include "regression_task.hpp"
#include "train_util.hpp"

namespace attn_cli {
namespace {

struct TrainOptions {
  std::int64_t steps = 1500, batch = 32, seq_len = 16, dim = 64, heads = 4, kv_heads = 0, layers = 2, ffn = 128,
               window = -1, stride = 0, global_tokens = 0;
  std::string feature_map = "elu";
  std::string attention = "mha", activation = "gelu", norm = "layer_norm", positions = "rope", pooling = "mean";
  bool post_norm = false, checkpointing = false, bf16 = false, quiet = false;
  double lr = 3e-3, min_lr = 1e-5, weight_decay = 0.01, clip = 1.0, dropout = 0.0, marker_rate = 0.25;
  std::int64_t warmup = 50, eval_every = 50, eval_size = 512;
  int threads = 0;
  std::uint64_t seed = 0;
  std::string csv = "train_regression.csv", plot = "train_regression.png", save, resume;
  double max_ratio = -1, min_ratio = -1;
};

attn::nn::RegressionConfig model_config(const TrainOptions& o) {
  attn::nn::RegressionConfig rc;
  rc.vocab_size = 3;  // plain, plus, minus
  rc.num_features = 1;
  rc.max_len = o.positions == "learned" ? o.seq_len : 0;
  ATTN_CHECK(o.positions == "learned" || o.positions == "rope", value, "--positions", "\"", o.positions,
             "\", expected rope or learned");
  auto& l = rc.encoder.layer;
  l.embed_dim = o.dim;
  l.num_heads = o.heads;
  l.num_kv_heads = o.kv_heads;
  l.ffn_dim = o.ffn;
  l.attention = o.attention;
  // The window and stride are checked here so that the errors name the flags.
  const bool windowed = o.attention == "local" || o.attention == "strided";
  ATTN_CHECK(o.window >= (o.attention == "local" ? 0 : -1) && (windowed || o.window == -1), value, "--window", "= ",
             o.window, " with --attention ", o.attention, ", expected ",
             o.attention == "local"     ? "the window (>= 0: keys within that distance are visible)"
             : o.attention == "strided" ? "-1 (none) or >= 0 (keys within that distance are visible too)"
                                        : "-1 (only --attention local or strided has a window)");
  ATTN_CHECK(o.attention == "strided" ? o.stride >= 1 : o.stride == 0 && o.global_tokens == 0, value, "--stride", "= ",
             o.stride, " (--global-tokens ", o.global_tokens, ") with --attention ", o.attention, ", expected ",
             o.attention == "strided" ? "the stride >= 1 (query i sees keys j with (i - j) mod stride = 0)"
                                      : "0 (only --attention strided has a stride)");
  ATTN_CHECK(o.global_tokens >= 0, value, "--global-tokens", "= ", o.global_tokens, ", expected >= 0");
  l.window = o.window;
  l.stride = o.stride;
  l.global_tokens = o.global_tokens;
  ATTN_CHECK(o.feature_map == "elu" || o.feature_map == "favor", value, "--feature-map", "\"", o.feature_map,
             "\", expected elu or favor");
  l.feature_map = o.feature_map == "favor" ? attn::FeatureMap::favor : attn::FeatureMap::elu;
  l.activation = attn::nn::parse_activation(o.activation);
  ATTN_CHECK(o.norm == "layer_norm" || o.norm == "rms_norm", value, "--norm", "\"", o.norm,
             "\", expected layer_norm or rms_norm");
  l.norm = o.norm == "layer_norm" ? attn::nn::NormKind::layer_norm : attn::nn::NormKind::rms_norm;
  l.norm_first = !o.post_norm;
  l.dropout = o.dropout;
  if (o.positions == "rope" && o.attention != "mean") l.rotary = attn::nn::RotaryConfig{};
  l.seed = o.seed;
  rc.encoder.num_layers = o.layers;
  rc.pooling = attn::nn::parse_pooling(o.pooling);
  rc.seed = o.seed;
  return rc;
}

attn::nn::RegressionBatch<float> as_batch(const RegressionData& d, std::uint64_t step) {
  attn::nn::RegressionBatch<float> b;
  b.B = d.B;
  b.L = d.L;
  b.ids = d.types.data();
  b.features = d.values.data();
  b.lengths = d.lengths;
  b.step = step;
  return b;
}

double evaluate(attn::nn::RegressionTransformer<float>& model, const std::vector<RegressionData>& eval) {
  model.set_training(false);
  double sum = 0;
  std::int64_t n = 0;
  for (const RegressionData& d : eval) {
    const float* pred = model.forward(as_batch(d, 0));
    sum += attn::nn::mse_loss(pred, d.targets.data(), d.B, static_cast<float*>(nullptr)) * static_cast<double>(d.B);
    n += d.B;
  }
  model.set_training(true);
  return sum / static_cast<double>(n);
}

void write_plot(const std::string& csv, const std::string& png, const std::string& title) {
  char body[1024];
  std::snprintf(body, sizeof body,
                "set key top right\nset logscale y\nset grid\nset xlabel 'step'\n"
                "set ylabel 'loss / trivial loss'\nset title '%s'\n"
                "plot '%s' every ::1 using 1:($3/$6) with lines title 'train (batch)', "
                "'' every ::1 using 1:($4 > 0 ? $4/$6 : 1/0) with linespoints title 'eval', 0.1 with lines dt 2 "
                "title '10%% of trivial'\n",
                title.c_str(), csv.c_str());
  run_gnuplot(png, body);
}

int run_train_regression(const TrainOptions& o) {
  attn::bench::ensure_bench_environment();
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
  omp_set_num_threads(threads);
  ATTN_CHECK(o.steps >= 1 && o.batch >= 1 && o.seq_len >= 2, value, "--steps", "steps = ", o.steps,
             ", batch = ", o.batch, ", seq-len = ", o.seq_len, ", expected ≥ 1, ≥ 1, ≥ 2");
  ATTN_CHECK(o.marker_rate > 0 && o.marker_rate <= 1, value, "--marker-rate", "= ", o.marker_rate,
             ", expected in (0, 1]");
  const RegressionTask task{o.seq_len, o.marker_rate};
  const attn::nn::MatmulPrecisionGuard precision(o.bf16 ? attn::nn::MatmulPrecision::bf16
                                                        : attn::nn::float32_matmul_precision());
  // Only AdamW and checkpoint loads write the weights: bf16 copies are made once per step.
  const attn::nn::WeightCacheGuard weight_cache;
  attn::nn::RegressionTransformer<float> model(model_config(o));
  model.set_checkpoint(o.checkpointing);
  attn::nn::AdamWConfig ac;
  ac.weight_decay = o.weight_decay;
  attn::nn::AdamW opt(model, ac);
  if (!o.resume.empty()) attn::io::load_checkpoint(o.resume, model, &opt);
  const attn::nn::LrSchedule sched{o.lr, o.warmup, o.steps, o.min_lr};

  std::vector<RegressionData> eval;  // a fixed held-out set
  std::mt19937_64 eval_rng(o.seed ^ 0xE7A1ull);
  for (std::int64_t n = 0; n < o.eval_size; n += o.batch)
    eval.push_back(make_regression_batch(task, std::min(o.batch, o.eval_size - n), eval_rng));
  double mean = 0, trivial = 0, count = 0;
  for (const RegressionData& d : eval)
    for (float y : d.targets) mean += y, count += 1;
  mean /= count;
  for (const RegressionData& d : eval)
    for (float y : d.targets) trivial += (y - mean) * (y - mean);
  trivial /= count;

  std::printf(
      "attn train regression: %s attention, %lld layers, E = %lld, %lld heads, FFN %lld (%s), %s, %s positions, "
      "%s pooling, %lld parameters\n",
      o.attention.c_str(), static_cast<long long>(o.layers), static_cast<long long>(o.dim),
      static_cast<long long>(o.heads), static_cast<long long>(o.ffn), o.activation.c_str(),
      o.post_norm ? "post-norm" : "pre-norm", o.positions.c_str(), o.pooling.c_str(),
      static_cast<long long>(model.num_parameters()));
  std::printf(
      "task: L = %lld (valid lengths %lld..%lld), marker rate %.2f; batch %lld, %lld steps, lr %.2g (warmup %lld, "
      "cosine to %.2g), weight decay %.2g, clip %.2g, %d threads%s%s\n",
      static_cast<long long>(o.seq_len), static_cast<long long>((o.seq_len + 1) / 2), static_cast<long long>(o.seq_len),
      o.marker_rate, static_cast<long long>(o.batch), static_cast<long long>(o.steps), o.lr,
      static_cast<long long>(o.warmup), o.min_lr, o.weight_decay, o.clip, threads,
      o.checkpointing ? ", gradient checkpointing" : "", o.bf16 ? ", bf16 matmuls (fp32 master weights)" : "");
  std::printf("trivial loss (predict the mean) on %lld held-out sequences: %.4f\n", static_cast<long long>(count),
              trivial);

  FILE* csv = o.csv.empty() ? nullptr : std::fopen(o.csv.c_str(), "w");
  ATTN_CHECK(o.csv.empty() || csv, system, "--csv", "cannot write ", o.csv);
  if (csv) std::fprintf(csv, "step,lr,train_loss,eval_loss,grad_norm,trivial_loss,tokens_per_s,step_ms\n");
  const bool tty = isatty(fileno(stderr)) && !o.quiet;
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  double train_secs = 0, tokens = 0, last_eval = -1, ema = -1;
  std::int64_t saved_bytes = 0;
  std::vector<double> step_times;
  const std::int64_t first = opt.steps();
  for (std::int64_t step = first; step < o.steps; ++step) {
    std::mt19937_64 rng(o.seed * 1000003ull + static_cast<std::uint64_t>(step));  // data is a function of the step
    const RegressionData d = make_regression_batch(task, o.batch, rng);
    const auto ts = clock::now();
    model.zero_grad();
    const float* pred = model.forward(as_batch(d, static_cast<std::uint64_t>(step)));
    saved_bytes = std::max(saved_bytes, model.saved_bytes());
    std::vector<float> dpred(static_cast<std::size_t>(d.B));
    const double loss = attn::nn::mse_loss(pred, d.targets.data(), d.B, dpred.data());
    model.backward(dpred.data());
    const double gnorm = attn::nn::grad_norm(model);
    const double lr = sched.at(step);
    opt.step(lr, attn::nn::clip_scale(gnorm, o.clip));  // the clip fused into AdamW's pass (optim.hpp)
    const double step_secs = std::chrono::duration<double>(clock::now() - ts).count();
    train_secs += step_secs;
    step_times.push_back(step_secs);
    for (std::int64_t n : d.lengths) tokens += static_cast<double>(n);
    ema = ema < 0 ? loss : 0.95 * ema + 0.05 * loss;
    const bool last = step + 1 == o.steps;
    const bool do_eval = last || (o.eval_every > 0 && (step + 1) % o.eval_every == 0);
    if (do_eval) last_eval = evaluate(model, eval);
    const double tps = tokens / std::max(train_secs, 1e-9);
    const double elapsed = std::chrono::duration<double>(clock::now() - t0).count();
    const double eta = elapsed / static_cast<double>(step + 1 - first) * static_cast<double>(o.steps - step - 1);
    if (csv)
      std::fprintf(csv, "%lld,%.6g,%.6g,%.6g,%.6g,%.6g,%.1f,%.3f\n", static_cast<long long>(step + 1), lr, loss,
                   do_eval ? last_eval : -1.0, gnorm, trivial, tps, 1e3 * step_secs);
    if (tty) {
      const int width = 24, filled = static_cast<int>(width * (step + 1) / o.steps);
      std::fprintf(stderr, "\r%6lld/%lld [%s%s] loss %.4f (%.3f of trivial) eval %.3f  %.1fk tok/s  ETA %s ",
                   static_cast<long long>(step + 1), static_cast<long long>(o.steps), std::string(filled, '=').c_str(),
                   std::string(width - filled, ' ').c_str(), ema, ema / trivial,
                   last_eval >= 0 ? last_eval / trivial : 1.0, tps / 1e3, clock_string(eta).c_str());
    } else if (do_eval && !o.quiet) {
      std::printf("step %6lld/%lld  train %.4f (%.3f of trivial)  eval %.4f (%.3f of trivial)  %.1fk tok/s  ETA %s\n",
                  static_cast<long long>(step + 1), static_cast<long long>(o.steps), ema, ema / trivial, last_eval,
                  last_eval / trivial, tps / 1e3, clock_string(eta).c_str());
      std::fflush(stdout);
    }
  }
  if (tty) std::fprintf(stderr, "\n");
  if (csv) std::fclose(csv);
  if (last_eval < 0) last_eval = evaluate(model, eval);
  const double ratio = last_eval / trivial;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const std::int64_t ran = o.steps - first;
  std::vector<double> sorted = step_times;
  std::sort(sorted.begin(), sorted.end());
  const double median_ms = sorted.empty() ? 0.0 : 1e3 * sorted[sorted.size() / 2];
  std::printf("final eval loss %.5f = %.4f of the trivial loss %.4f\n", last_eval, ratio, trivial);
  std::printf(
      "%lld steps in %.1f s (%.1f ms/step forward+backward+AdamW, median %.1f ms, %.1fk tokens/s), activations "
      "kept %.1f MiB, peak RSS %.1f MiB\n",
      static_cast<long long>(ran), train_secs, 1e3 * train_secs / static_cast<double>(std::max<std::int64_t>(ran, 1)),
      median_ms, tokens / std::max(train_secs, 1e-9) / 1e3, static_cast<double>(saved_bytes) / (1 << 20),
      static_cast<double>(ru.ru_maxrss) / 1024.0);
  if (!o.save.empty()) {
    attn::io::save_checkpoint(o.save, model, &opt,
                              {{"task", "regression"},
                               {"attention", o.attention},
                               {"dim", std::to_string(o.dim)},
                               {"layers", std::to_string(o.layers)},
                               {"heads", std::to_string(o.heads)},
                               {"ffn", std::to_string(o.ffn)},
                               {"seq_len", std::to_string(o.seq_len)}});
    std::printf("checkpoint: %s\n", o.save.c_str());
  }
  if (csv && !o.plot.empty()) {
    write_plot(o.csv, o.plot, "attn train regression: " + o.attention + " attention");
    std::printf("loss curve: %s, %s\n", o.csv.c_str(), o.plot.c_str());
  }
  int rc = 0;
  if (o.max_ratio > 0 && !(ratio <= o.max_ratio)) {
    std::printf("FAIL: eval loss / trivial = %.4f, above --max-ratio %.4f\n", ratio, o.max_ratio);
    rc = 1;
  }
  if (o.min_ratio > 0 && !(ratio >= o.min_ratio)) {
    std::printf("FAIL: eval loss / trivial = %.4f, below --min-ratio %.4f\n", ratio, o.min_ratio);
    rc = 1;
  }
  return rc;
}

}  // namespace

void add_train(CLI::App& app) {
  auto* train = app.add_subcommand("train", "Train a model from C++ (explicit backward, AdamW)");
  train->require_subcommand(1);
  auto o = std::make_shared<TrainOptions>();
  auto* cmd = train->add_subcommand("regression", "A transformer regressor on a synthetic task that needs attention");
  cmd->add_option("--steps", o->steps, "Training steps")->capture_default_str();
  cmd->add_option("--batch", o->batch, "Sequences per step")->capture_default_str();
  cmd->add_option("--seq-len", o->seq_len, "Sequence length L (valid lengths are uniform in [L/2, L])")
      ->capture_default_str();
  cmd->add_option("--dim", o->dim, "Embedding dim E")->capture_default_str();
  cmd->add_option("--heads", o->heads, "Attention heads")->capture_default_str();
  cmd->add_option("--kv-heads", o->kv_heads, "KV heads for --attention gqa")->capture_default_str();
  cmd->add_option("--layers", o->layers, "Encoder layers")->capture_default_str();
  cmd->add_option("--ffn", o->ffn, "FFN hidden size")->capture_default_str();
  cmd->add_option("--attention", o->attention, "mha | gqa | mqa | local | strided | linear, or mean (the no-attention control)")
      ->capture_default_str();
  cmd->add_option("--window", o->window, "For --attention local (and strided): keys within this distance are visible")
      ->capture_default_str();
  cmd->add_option("--stride", o->stride, "For --attention strided: query i sees keys j with (i - j) mod stride = 0")
      ->capture_default_str();
  cmd->add_option("--global-tokens", o->global_tokens, "For --attention strided: the first tokens are global")
      ->capture_default_str();
  cmd->add_option("--feature-map", o->feature_map, "For --attention linear: elu | favor")->capture_default_str();
  cmd->add_option("--activation", o->activation, "relu | gelu | gelu_tanh | swiglu")->capture_default_str();
  cmd->add_option("--norm", o->norm, "layer_norm | rms_norm")->capture_default_str();
  cmd->add_flag("--post-norm", o->post_norm, "Post-norm layers (default pre-norm)");
  cmd->add_option("--positions", o->positions, "rope (rotary in attention) | learned (position embeddings)")
      ->capture_default_str();
  cmd->add_option("--pooling", o->pooling, "mean | cls")->capture_default_str();
  cmd->add_option("--lr", o->lr, "Peak learning rate")->capture_default_str();
  cmd->add_option("--min-lr", o->min_lr, "Learning rate at the end of the cosine")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "Linear warmup steps")->capture_default_str();
  cmd->add_option("--weight-decay", o->weight_decay, "AdamW decoupled weight decay (matrices and embeddings)")
      ->capture_default_str();
  cmd->add_option("--clip", o->clip, "Gradient clipping (global L2 norm)")->capture_default_str();
  cmd->add_option("--dropout", o->dropout, "Residual dropout")->capture_default_str();
  cmd->add_option("--marker-rate", o->marker_rate, "Fraction of marker tokens")->capture_default_str();
  cmd->add_option("--eval-every", o->eval_every, "Evaluate every N steps")->capture_default_str();
  cmd->add_option("--eval-size", o->eval_size, "Held-out sequences")->capture_default_str();
  cmd->add_option("--threads", o->threads, "Threads (default: all)");
  cmd->add_option("--seed", o->seed, "Seed of weights and data")->capture_default_str();
  cmd->add_flag("--checkpointing", o->checkpointing, "Gradient checkpointing per layer");
  cmd->add_flag("--bf16", o->bf16, "bf16 matmuls (oneDNN) with fp32 master weights and gradients");
  cmd->add_option("--csv", o->csv, "Loss curve CSV ('' = none)")->capture_default_str();
  cmd->add_option("--plot", o->plot, "Loss curve PNG via gnuplot ('' = none)")->capture_default_str();
  cmd->add_option("--save", o->save, "Write a safetensors checkpoint at the end");
  cmd->add_option("--resume", o->resume, "Resume from a checkpoint of the same configuration");
  cmd->add_option("--max-ratio", o->max_ratio, "Exit 1 unless eval loss / trivial loss ≤ this");
  cmd->add_option("--min-ratio", o->min_ratio, "Exit 1 unless eval loss / trivial loss ≥ this");
  cmd->add_flag("--quiet", o->quiet, "No progress output");
  cmd->callback([o] { exit_code() = run_train_regression(*o); });
  add_train_lm(*train);
}

}  // namespace attn_cli
