// attn._core.SentenceEncoder: include/attn/models/sentence_encoder.hpp for Python
// (docs/embeddings.md). encode() returns a numpy float32 array [len(texts), dim].

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/models/sentence_encoder.hpp"
#include "attn/nn/matmul_precision.hpp"
#include "convert.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace attn::py {

void register_sentence(nb::module_& m) {
  using models::SentenceEncoder;
  using Embeddings = nb::ndarray<nb::numpy, float, nb::ndim<2>>;
  nb::class_<SentenceEncoder>(m, "SentenceEncoder",
                              "Sentence embeddings of a sentence-transformers BERT directory (config.json,\n"
                              "model.safetensors, vocab.txt, ...); the numbers of SentenceTransformer(dir).encode.\n"
                              "docs/embeddings.md.")
      .def(
          "__init__",
          [](SentenceEncoder* self, const std::string& dir, const std::string& precision) {
            new (self) SentenceEncoder(dir, nn::matmul_precision_from_string(precision, "precision"));
          },
          "model_dir"_a, "precision"_a = "f32",
          "SentenceEncoder(model_dir, precision='f32'). ValueError naming the file, tensor or field that is missing\n"
          "or wrong. precision 'bf16': bf16 GEMMs on oneDNN (ValueError where oneDNN or its bf16 kernels are missing).")
      .def(
          "encode",
          [](const SentenceEncoder& enc, nb::handle texts, std::int64_t batch_size, int threads) {
            const std::vector<std::string> t = texts_from(texts);
            auto* owned = new std::vector<float>();
            nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
            {
              nb::gil_scoped_release release;
              *owned = enc.encode(t, batch_size, threads);
            }
            if (owned->empty()) owned->resize(1);  // a valid data pointer for the [0, dim] array
            return Embeddings(owned->data(), {t.size(), static_cast<std::size_t>(enc.dim())}, owner);
          },
          "texts"_a, "batch_size"_a = 32, "threads"_a = 0,
          "encode(texts, batch_size=32, threads=0) -> float32 array [len(texts), dim]: texts sorted by length,\n"
          "packed batches of batch_size (no padding), rows in the order of texts. threads 0 = OpenMP's default.")
      .def_prop_ro("dim", &SentenceEncoder::dim)
      .def_prop_ro("max_seq_length", [](const SentenceEncoder& e) { return e.info().max_seq_length; })
      .def_prop_ro("normalize", [](const SentenceEncoder& e) { return e.info().normalize; })
      .def_prop_ro("precision",
                   [](const SentenceEncoder& e) { return std::string(nn::matmul_precision_name(e.precision())); })
      .def_prop_ro("gemm_impl", [](const SentenceEncoder& e) { return e.encoder().gemm_impl(); });
}

}  // namespace attn::py
