// `attn bench-decode`: the decode benchmark (bench/decode_bench.cpp) from the command line. The
// general `attn bench` calls the same function for `--op decode`.

#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

#include "commands.hpp"
#include "decode_bench.hpp"

namespace attn_cli {

void add_bench_decode(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench-decode", "Decode (Nq = 1) against KV caches: GB/s of cache read vs read bandwidth");
  auto opts = std::make_shared<attn::bench::DecodeBenchOptions>();
  cmd->add_option("--batches", opts->batches, "batch sizes")->capture_default_str();
  cmd->add_option("--lengths", opts->lengths, "cache lengths Nk")->capture_default_str();
  cmd->add_option("--repeats", opts->repeats, "timed calls per configuration")->capture_default_str();
  cmd->add_option("--threads", opts->threads, "threads (0 = all)")->capture_default_str();
  cmd->add_option("--max-cache-gb", opts->max_cache_gb, "skip larger caches")->capture_default_str();
  cmd->add_option("--json", opts->json_path, "write the results as JSON");
  auto dtypes = std::make_shared<std::vector<std::string>>();
  cmd->add_option("--dtypes", *dtypes, "cache dtypes: f32 bf16 i8");
  auto layouts = std::make_shared<std::vector<std::string>>();
  cmd->add_option("--layouts", *layouts, "contiguous paged");
  cmd->add_flag("!--warm", opts->cold, "do not flush the LLC between calls");
  cmd->callback([opts, dtypes, layouts] {
    if (!dtypes->empty()) {
      opts->dtypes.clear();
      for (const std::string& d : *dtypes)
        opts->dtypes.push_back(d == "bf16" ? attn::DType::bf16 : d == "i8" ? attn::DType::i8 : attn::DType::f32);
    }
    if (!layouts->empty()) {
      opts->layouts.clear();
      for (const std::string& l : *layouts)
        opts->layouts.push_back(l == "paged" ? attn::KvLayout::paged : attn::KvLayout::contiguous);
    }
    attn::bench::run_decode_bench(*opts, stdout);
  });
}

}  // namespace attn_cli
