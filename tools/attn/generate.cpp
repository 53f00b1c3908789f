// `attn generate` (docs/generation.md): text from a LLaMA-style model directory (config.json +
// model.safetensors) with the KV cache, streaming each token to stdout as it is produced; the
// prefill time and the decode rate go to stderr at the end. Tokens are bytes (ids 0-255; a model
// without a tokenizer has vocab 256 + specials): the prompt's UTF-8 bytes in, bytes out, other ids
// written as <|id|>. --prompt-ids / --print-ids work with any vocabulary.

#include <omp.h>
#include <attn/error.hpp>
#include <attn/nn/generate.hpp>
#include <attn/nn/llama.hpp>

#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "env.hpp"

namespace attn_cli {
namespace {

struct GenerateOptions {
  std::string model, prompt, prompt_ids, kv_dtype = "f32";
  std::int64_t max_new = 64;
  double temperature = 0.0, top_p = 1.0;
  std::int64_t top_k = 0;
  std::uint64_t seed = 0;
  bool paged = false, no_cache = false, print_ids = false, bos = false, ignore_eos = false;
  int threads = 0;
};

std::vector<std::int64_t> parse_ids(const std::string& text) {
  std::vector<std::int64_t> ids;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    std::size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    ATTN_CHECK(used > 0 && item.find_first_not_of(" \t", used) == std::string::npos && v >= 0, value, "--prompt-ids",
               "has \"", item, "\", expected comma-separated token ids ≥ 0");
    ids.push_back(v);
  }
  return ids;
}

attn::DType parse_kv_dtype(const std::string& s) {
  if (s == "f32") return attn::DType::f32;
  if (s == "bf16") return attn::DType::bf16;
  if (s == "i8") return attn::DType::i8;
  throw attn::Error(attn::ErrorKind::value, "--kv-dtype", "is \"" + s + "\", expected f32, bf16 or i8");
}

void write_token(std::int64_t id, bool print_ids, bool first) {
  if (print_ids)
    std::fprintf(stdout, first ? "%lld" : " %lld", static_cast<long long>(id));
  else if (id < 256)
    std::fputc(static_cast<int>(id), stdout);
  else
    std::fprintf(stdout, "<|%lld|>", static_cast<long long>(id));
  std::fflush(stdout);
}

int run_generate(const GenerateOptions& o) {
  attn::bench::ensure_bench_environment();
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
  omp_set_num_threads(threads);
  attn::nn::GenerateConfig g;
  g.max_new_tokens = o.max_new;
  g.sampling = {o.temperature, o.top_k, o.top_p, o.seed};
  attn::nn::Sampler check(g.sampling);  // bad settings fail before the model is read
  g.use_cache = !o.no_cache;
  g.kv_dtype = parse_kv_dtype(o.kv_dtype);
  g.kv_layout = o.paged ? attn::KvLayout::paged : attn::KvLayout::contiguous;
  ATTN_CHECK(o.prompt.empty() || o.prompt_ids.empty(), value, "--prompt-ids",
             "is given with --prompt, expected one of them");

  attn::nn::LlamaForCausalLM model = attn::nn::LlamaForCausalLM::from_pretrained(o.model);
  const attn::nn::LlamaConfig& c = model.config();
  std::vector<std::int64_t> prompt;
  if (o.bos) {
    ATTN_CHECK(c.bos_token_id.has_value(), value, "--bos", "is given, but config.json has no bos_token_id",
               ", expected one there");
    prompt.push_back(*c.bos_token_id);
  }
  if (!o.prompt_ids.empty()) {
    const std::vector<std::int64_t> ids = parse_ids(o.prompt_ids);
    prompt.insert(prompt.end(), ids.begin(), ids.end());
  } else {
    ATTN_CHECK(c.vocab_size >= 256, value, "--prompt",
               "needs byte tokens, but the model's vocab_size = ", c.vocab_size,
               ", expected ≥ 256 (ids 0-255 are the bytes), or give --prompt-ids");
    for (unsigned char ch : o.prompt) prompt.push_back(ch);
  }
  ATTN_CHECK(!prompt.empty(), value, "--prompt", "is empty, expected at least one token (or --bos)");
  if (!o.ignore_eos) g.stop_tokens = c.eos_token_ids;

  bool first = true;
  const attn::nn::GenerateResult r = attn::nn::generate(model, prompt, g, [&](std::int64_t id) {
    write_token(id, o.print_ids, first);
    first = false;
    return true;
  });
  std::fputc('\n', stdout);
  std::fflush(stdout);
  const double prefill_ms = 1e3 * r.prefill_seconds;
  const double rate = r.decode_seconds > 0 ? static_cast<double>(r.decode_steps) / r.decode_seconds : 0.0;
  std::fprintf(stderr,
               "attn generate: prompt %zu tokens, prefill %.1f ms (%.1f tokens/s); %zu new tokens, %lld decode "
               "steps in %.3f s: %.2f tokens/s; cache %s %s; %d threads\n",
               prompt.size(), prefill_ms, prefill_ms > 0 ? 1e3 * static_cast<double>(prompt.size()) / prefill_ms : 0.0,
               r.tokens.size(), static_cast<long long>(r.decode_steps), r.decode_seconds, rate,
               o.no_cache ? "none (recomputed)" : o.kv_dtype.c_str(),
               o.no_cache ? "" : (o.paged ? "paged" : "contiguous"), threads);
  return 0;
}

}  // namespace

void add_generate(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text with a LLaMA-style model and the KV cache");
  cmd->add_option("--model", o->model, "Model directory: config.json + model.safetensors")->required();
  cmd->add_option("--prompt", o->prompt, "Prompt text (its UTF-8 bytes are the tokens)");
  cmd->add_option("--prompt-ids", o->prompt_ids, "Prompt as comma-separated token ids (instead of --prompt)");
  cmd->add_option("--max-new", o->max_new, "New tokens at most")->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "Sampling temperature (0 = greedy)")->capture_default_str();
  cmd->add_option("--top-k", o->top_k, "Keep the k most likely tokens (0 = all)")->capture_default_str();
  cmd->add_option("--top-p", o->top_p, "Nucleus: keep the most likely tokens up to this mass")->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of the sampler")->capture_default_str();
  cmd->add_flag("--paged", o->paged, "Paged KV cache (default contiguous)");
  cmd->add_option("--kv-dtype", o->kv_dtype, "KV cache storage: f32 | bf16 | i8")->capture_default_str();
  cmd->add_flag("--no-cache", o->no_cache, "Recompute the whole sequence for every token (reference, benchmarks)");
  cmd->add_flag("--print-ids", o->print_ids, "Write token ids instead of bytes");
  cmd->add_flag("--bos", o->bos, "Start the prompt with config.json's bos_token_id");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Do not stop at config.json's eos_token_id");
  cmd->add_option("--threads", o->threads, "Threads (default: all)");
  cmd->callback([o] { exit_code() = run_generate(*o); });
}

}  // namespace attn_cli
