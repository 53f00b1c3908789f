// `attn tokenize`: BERT WordPiece ids (or tokens) of each line of stdin, one output line per input
// line: [CLS] pieces... [SEP], truncated to --max-length (docs/text.md).

#include <attn/error.hpp>
#include <attn/text/wordpiece.hpp>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "commands.hpp"
#include "model_dir.hpp"

namespace attn_cli {
namespace {

struct TokenizeOptions {
  std::string vocab;
  std::int64_t max_length = 256;
  bool tokens = false;
};

int run_tokenize(const TokenizeOptions& opt) {
  const std::string vocab = opt.vocab.empty() ? model_file("vocab.txt", "--vocab") : opt.vocab;
  const attn::text::WordPiece wp(vocab);
  ATTN_CHECK(opt.max_length >= 2, value, "--max-length", "= ", opt.max_length, ", expected >= 2 (room for [CLS] and [SEP])");
  std::string line, out;
  for (std::int64_t n = 1; std::getline(std::cin, line); ++n) {
    const auto ids = wp.encode(line, opt.max_length, "line " + std::to_string(n));
    out.clear();
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) out.push_back(' ');
      out += opt.tokens ? wp.id_to_token(ids[i]) : std::to_string(ids[i]);
    }
    out.push_back('\n');
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  ATTN_CHECK(!std::cin.bad(), system, "stdin", "had a read error, expected a readable stream");
  return std::fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace

void add_tokenize(CLI::App& app) {
  auto opt = std::make_shared<TokenizeOptions>();
  auto* cmd = app.add_subcommand("tokenize", "BERT WordPiece token ids of each line of stdin, one line each");
  cmd->add_option("--vocab", opt->vocab, "vocab.txt (default: the packaged all-MiniLM-L6-v2's, or $ATTN_MODEL_DIR's)");
  cmd->add_option("--max-length", opt->max_length, "Tokens per line at most, [CLS] and [SEP] included")
      ->capture_default_str();
  cmd->add_flag("--tokens", opt->tokens, "Print the tokens instead of their ids");
  cmd->callback([opt] { exit_code() = run_tokenize(*opt); });
}

}  // namespace attn_cli
