// Consumer of the installed attn::models (on attn::attn and attn::text): a config that is not a
// BERT's is refused with the one error format. Exit code 0 = the package links and works.

#include <attn/error.hpp>
#include <attn/models/bert.hpp>

#include <cstdio>
#include <fstream>
#include <string>

int main() {
  const std::string path = "attn_models_consumer_config.json";
  std::ofstream(path) << R"({"model_type": "gpt2"})";
  try {
    attn::models::BertConfig::from_file(path);
  } catch (const attn::Error& e) {
    std::printf("attn::models consumer: %s\n", e.what());
    return std::string(e.what()).find("expected \"bert\"") != std::string::npos ? 0 : 1;
  }
  return 1;
}
