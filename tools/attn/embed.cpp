// `attn embed` and `attn similarity`: sentence embeddings of the packaged all-MiniLM-L6-v2 (or any
// sentence-transformers BERT directory) through attn::models::SentenceEncoder (docs/embeddings.md).
//   attn embed [--model DIR] [--batch 32] [--threads N] [--bf16] [--out FILE.npy|FILE.jsonl] < sentences.txt
//   attn similarity [--model DIR] [--bf16] [--file F] "a" "b" ...   (the cosine-similarity matrix as a table)
// --bf16: the encoder's bf16 mode (bf16 GEMMs on oneDNN; a clear error where it cannot run).

#include <unistd.h>
#include <attn/error.hpp>
#include <attn/models/sentence_encoder.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "env.hpp"
#include "model_dir.hpp"

namespace attn_cli {
namespace {

struct EmbedOptions {
  std::string model, out, file;
  std::int64_t batch = 32;
  int threads = 0;
  bool quiet = false;
  bool bf16 = false;
  std::vector<std::string> texts;
};

std::string model_dir(const std::string& given) {
  if (!given.empty()) return given;
  return std::filesystem::path(model_file("config.json", "--model")).parent_path().string();
}

attn::models::SentenceEncoder load_encoder(const EmbedOptions& o) {
  return attn::models::SentenceEncoder(model_dir(o.model),
                                       o.bf16 ? attn::nn::MatmulPrecision::bf16 : attn::nn::MatmulPrecision::f32);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string json_string(const std::string& s) {
  std::string o = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      o += '\\';
      o += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else {
      o += ch;
    }
  }
  return o + "\"";
}

// .npy version 1.0: magic, header dict padded with spaces to a multiple of 64 bytes, raw little-endian f4.
void write_npy(const std::string& path, const std::vector<float>& e, std::int64_t n, std::int64_t d) {
  std::string header =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(n) + ", " + std::to_string(d) + "), }";
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  ATTN_CHECK(out.good(), system, "--out", path, " cannot be opened for writing, expected a writable path");
  const auto len = static_cast<std::uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  const char len_bytes[2] = {static_cast<char>(len & 0xff), static_cast<char>(len >> 8)};
  out.write(len_bytes, 2);
  out << header;
  out.write(reinterpret_cast<const char*>(e.data()), static_cast<std::streamsize>(e.size() * sizeof(float)));
  ATTN_CHECK(out.good(), system, "--out", path, " could not be written, expected a writable path");
}

void write_jsonl(std::FILE* f, const std::vector<std::string>& texts, const std::vector<float>& e, std::int64_t d) {
  std::string line;
  char buf[32];
  for (std::size_t i = 0; i < texts.size(); ++i) {
    line = "{\"text\": " + json_string(texts[i]) + ", \"embedding\": [";
    for (std::int64_t k = 0; k < d; ++k) {
      std::snprintf(buf, sizeof buf, k ? ", %.9g" : "%.9g",
                    e[i * static_cast<std::size_t>(d) + static_cast<std::size_t>(k)]);
      line += buf;
    }
    line += "]}\n";
    std::fwrite(line.data(), 1, line.size(), f);
  }
}

// A progress bar on stderr when it is a terminal; one summary line otherwise.
struct ProgressBar {
  bool tty = isatty(STDERR_FILENO) != 0, quiet = false;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); }
  void update(std::int64_t done, std::int64_t total) const {
    if (quiet || !tty) return;
    const int width = 30, filled = total ? static_cast<int>(width * done / total) : width;
    std::fprintf(stderr, "\rembed [%s%s] %lld/%lld sentences, %.0f/s",
                 std::string(static_cast<std::size_t>(filled), '#').c_str(),
                 std::string(static_cast<std::size_t>(width - filled), '.').c_str(), static_cast<long long>(done),
                 static_cast<long long>(total), done / std::max(seconds(), 1e-9));
  }
  void finish(std::int64_t total, const std::string& note) const {
    if (quiet) return;
    std::fprintf(stderr, "%sembed: %lld sentences in %.2f s (%.1f sentences/s%s)\n", tty ? "\r\33[2K" : "",
                 static_cast<long long>(total), seconds(), total / std::max(seconds(), 1e-9), note.c_str());
  }
};

std::vector<std::string> read_lines(std::istream& in, const char* what) {
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  ATTN_CHECK(!in.bad(), system, what, "had a read error, expected a readable stream");
  return lines;
}

int run_embed(const EmbedOptions& o) {
  ATTN_CHECK(o.batch >= 1, value, "--batch", "= ", o.batch, ", expected ≥ 1");
  ATTN_CHECK(o.out.empty() || ends_with(o.out, ".npy") || ends_with(o.out, ".jsonl"), value, "--out", o.out,
             ", expected a file name ending in .npy or .jsonl");
  const attn::models::SentenceEncoder enc = load_encoder(o);
  const std::vector<std::string> texts = read_lines(std::cin, "stdin");
  ProgressBar bar;
  bar.quiet = o.quiet;
  const std::vector<float> e =
      enc.encode(texts, o.batch, o.threads, [&](std::int64_t done, std::int64_t total) { bar.update(done, total); });
  bar.finish(static_cast<std::int64_t>(texts.size()), o.bf16 ? ", bf16 GEMMs on " + enc.encoder().gemm_impl() : "");
  const std::int64_t n = static_cast<std::int64_t>(texts.size()), d = enc.dim();
  if (ends_with(o.out, ".npy")) {
    write_npy(o.out, e, n, d);
  } else if (!o.out.empty()) {
    std::FILE* f = std::fopen(o.out.c_str(), "wb");
    ATTN_CHECK(f != nullptr, system, "--out", o.out, " cannot be opened for writing, expected a writable path");
    write_jsonl(f, texts, e, d);
    const bool ok = std::fclose(f) == 0;
    ATTN_CHECK(ok, system, "--out", o.out, " could not be written, expected a writable path");
  } else {
    write_jsonl(stdout, texts, e, d);
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
}

int run_similarity(const EmbedOptions& o) {
  std::vector<std::string> texts = o.texts;
  if (!o.file.empty()) {
    std::ifstream in(o.file);
    ATTN_CHECK(in.good(), system, "--file", o.file,
               " cannot be opened, expected a text file with one sentence per line");
    for (std::string& t : read_lines(in, "--file")) texts.push_back(std::move(t));
  }
  ATTN_CHECK(!texts.empty(), value, "texts", "none given, expected sentences as arguments or --file");
  const attn::models::SentenceEncoder enc = load_encoder(o);
  const std::vector<float> e = enc.encode(texts, o.batch, o.threads);
  const std::int64_t n = static_cast<std::int64_t>(texts.size()), d = enc.dim();
  std::vector<double> norm(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    double s = 0;
    for (std::int64_t k = 0; k < d; ++k) s += static_cast<double>(e[i * d + k]) * e[i * d + k];
    norm[static_cast<std::size_t>(i)] = std::max(std::sqrt(s), 1e-12);
  }
  // Rows: index and the text (cut to 40 bytes at a UTF-8 boundary); columns: the indices.
  std::printf("cosine similarity (%s%s)\n", enc.info().normalize ? "normalised embeddings" : "embeddings",
              o.bf16 ? ", bf16 mode" : "");
  std::printf("%-46s", "");
  for (std::int64_t j = 0; j < n; ++j) std::printf("%8lld", static_cast<long long>(j));
  std::printf("\n");
  for (std::int64_t i = 0; i < n; ++i) {
    std::string label = texts[static_cast<std::size_t>(i)];
    if (label.size() > 40) {
      std::size_t cut = 40;
      while (cut > 0 && (static_cast<unsigned char>(label[cut]) & 0xC0) == 0x80) --cut;
      label = label.substr(0, cut) + "...";
    }
    std::printf("%3lld  %s%*s", static_cast<long long>(i), label.c_str(),
                static_cast<int>(41 - std::min<std::size_t>(label.size(), 41)), "");
    for (std::int64_t j = 0; j < n; ++j) {
      double dot = 0;
      for (std::int64_t k = 0; k < d; ++k) dot += static_cast<double>(e[i * d + k]) * e[j * d + k];
      std::printf("%8.4f", dot / (norm[static_cast<std::size_t>(i)] * norm[static_cast<std::size_t>(j)]));
    }
    std::printf("\n");
  }
  return std::fflush(stdout) == 0 ? 0 : 1;
}

void add_model_options(CLI::App* cmd, EmbedOptions& o) {
  cmd->add_option("--model", o.model,
                  "sentence-transformers BERT directory (config.json, model.safetensors, vocab.txt; default: the "
                  "packaged all-MiniLM-L6-v2, or $ATTN_MODEL_DIR)");
  cmd->add_option("--batch", o.batch, "Sentences per batch (sorted by length, packed without padding)")
      ->capture_default_str();
  cmd->add_option("--threads", o.threads, "Threads (0 = OpenMP's default)")->capture_default_str();
  cmd->add_flag("--bf16", o.bf16,
                "bf16 mode: bf16 GEMMs with fp32 accumulation on oneDNN (AMX / AVX512_BF16), weights rounded once "
                "(cosine similarity >= 0.999 to fp32)");
}

}  // namespace

void add_embed(CLI::App& app) {
  auto o = std::make_shared<EmbedOptions>();
  auto* cmd = app.add_subcommand("embed", "Sentence embeddings of each line of stdin (all-MiniLM-L6-v2 by default)");
  add_model_options(cmd, *o);
  cmd->add_option("--out", o->out, "FILE.npy (float32 [n, dim]) or FILE.jsonl; default: JSON lines on stdout");
  cmd->add_flag("--quiet", o->quiet, "No progress on stderr");
  cmd->callback([o] {
    attn::bench::ensure_bench_environment();  // OpenBLAS's best kernel for this CPU (re-executes once)
    exit_code() = run_embed(*o);
  });

  auto s = std::make_shared<EmbedOptions>();
  auto* sim =
      app.add_subcommand("similarity", "Cosine-similarity matrix of the sentences given (or of --file's lines)");
  add_model_options(sim, *s);
  sim->add_option("--file", s->file, "A text file, one sentence per line (added after the arguments)");
  sim->add_option("texts", s->texts, "Sentences");
  sim->callback([s] {
    attn::bench::ensure_bench_environment();
    exit_code() = run_similarity(*s);
  });
}

}  // namespace attn_cli
