#pragma once
// Subcommands of the attn CLI. Each lives in its own file and registers itself on the app; main.cpp
// calls every add_* function. A subcommand's callback returns through attn_cli::exit_code().

#include <CLI/CLI.hpp>

namespace attn_cli {

/// `attn check`: fast backends against the reference (check.cpp).
void add_check(CLI::App& app);
/// `attn bench-decode`: decode against KV caches vs read bandwidth (bench_decode.cpp).
void add_bench_decode(CLI::App& app);
/// `attn demo`: one small attention problem printed step by step (demo.cpp).
void add_demo(CLI::App& app);

/// `attn tokenize`: BERT WordPiece ids of each line of stdin (tokenize.cpp).
void add_tokenize(CLI::App& app);

/// `attn bench`: the benchmark sweep against same-run baselines (bench.cpp, bench/).
void add_bench(CLI::App& app);

/// `attn train regression`: a transformer trained from C++ on a synthetic task (train.cpp).
void add_train(CLI::App& app);
/// `attn train lm`: a tiny LLaMA-style byte-level LM on a shipped public-domain text (train_lm.cpp).
void add_train_lm(CLI::App& train);

/// `attn generate`: text from a LLaMA-style model with the KV cache (generate.cpp).
void add_generate(CLI::App& app);

/// `attn embed` and `attn similarity`: sentence embeddings and their cosine matrix (embed.cpp).
void add_embed(CLI::App& app);

/// The process exit code set by the subcommand that ran (0 = success).
int& exit_code();

}  // namespace attn_cli
