// attn: the command-line tool (docs/architecture.md §8). Subcommands are registered from their own files.

#include <attn/error.hpp>
#include <attn/sdpa.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "commands.hpp"

namespace attn_cli {
int& exit_code() {
  static int code = 0;
  return code;
}
}  // namespace attn_cli

int main(int argc, char** argv) {
  CLI::App app{"attn: exact attention (scaled-dot-product attention) for CPUs"};
  app.set_version_flag("--version", std::string("attn ") + attn::version());
  app.require_subcommand(1);
  attn_cli::add_check(app);
  attn_cli::add_demo(app);
  attn_cli::add_bench(app);
  attn_cli::add_bench_decode(app);
  attn_cli::add_tokenize(app);
  attn_cli::add_train(app);
  attn_cli::add_generate(app);
  attn_cli::add_embed(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const attn::Error& e) {
    std::fprintf(stderr, "attn: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "attn: unexpected error: %s\n", e.what());
    return 3;
  }
  return attn_cli::exit_code();
}
