// Replays the fuzz target's seed corpus (fuzz/corpus) and every input the fuzzer ever crashed on
// (fuzz/regressions) through the reader in this build (ASan/UBSan in the asan preset): each parses
// or throws attn::Error, and what parses reads back all its bytes.

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "attn/error.hpp"
#include "attn/io/safetensors.hpp"

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> inputs(const char* dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(fs::path(ATTN_SOURCE_DIR) / "fuzz" / dir))
    if (entry.is_regular_file() && entry.path().filename().string()[0] != '.') files.push_back(entry.path());
  return files;
}

void replay(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  if (!chars.empty()) std::memcpy(bytes.data(), chars.data(), chars.size());
  try {
    const auto f = attn::io::SafetensorsFile::parse(bytes, path.filename().string());
    for (const auto& e : f.tensors()) {
      volatile unsigned sum = 0;  // every byte read: ASan reports a read outside `bytes`
      for (std::uint64_t i = 0; i < e.nbytes(); ++i) sum = sum + std::to_integer<unsigned>(e.data[i]);
      try {
        (void)e.to_tensor();
      } catch (const attn::Error&) {
      }
    }
  } catch (const attn::Error& e) {
    EXPECT_NE(std::string(e.what()), "");
  }
}

TEST(FuzzCorpus, SeedsParseOrThrowAttnError) {
  const auto files = inputs("corpus");
  EXPECT_GE(files.size(), 5u);
  std::size_t valid = 0;
  for (const auto& p : files) {
    replay(p);
    if (p.extension() == ".safetensors") {
      std::ifstream in(p, std::ios::binary);
      const std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      EXPECT_NO_THROW((void)attn::io::SafetensorsFile::parse({reinterpret_cast<const std::byte*>(c.data()), c.size()}))
          << p << " was written by the Python safetensors package and must parse";
      ++valid;
    }
  }
  EXPECT_GE(valid, 3u);
}

TEST(FuzzCorpus, RegressionsParseOrThrowAttnError) {
  for (const auto& p : inputs("regressions")) replay(p);
}

}  // namespace
