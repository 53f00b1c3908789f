// libFuzzer target over the safetensors reader (scripts/fuzz.sh builds it with clang and
// -fsanitize=fuzzer,address,undefined; docs/io.md says how to run it longer). Any input either
// parses or throws attn::Error. A file that parses has every tensor byte read (ASan checks the
// reads stay in the input), converts to attn tensors or refuses with attn::Error, and survives a
// write-and-read-back round trip unchanged.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "attn/error.hpp"
#include "attn/io/safetensors.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "safetensors_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using attn::io::SafetensorsFile;
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const SafetensorsFile f = SafetensorsFile::parse(bytes, "fuzz");
    std::vector<attn::io::SafetensorsRecord> records;
    unsigned checksum = 0;
    for (const attn::io::SafetensorsEntry& e : f.tensors()) {
      for (std::uint64_t i = 0; i < e.nbytes(); ++i) checksum += std::to_integer<unsigned>(e.data[i]);
      try {
        const attn::Tensor t = e.to_tensor();
        if (std::memcmp(t.data(), e.data, e.nbytes()) != 0) fail("to_tensor changed the bytes");
        (void)e.view();
      } catch (const attn::Error&) {
      }
      records.push_back({e.name, e.dtype, e.shape, {e.data, e.nbytes()}});
    }
    const std::vector<std::byte> again = attn::io::serialize_safetensors(records, f.metadata());
    const SafetensorsFile g = SafetensorsFile::parse(again, "round trip");
    if (g.tensors().size() != f.tensors().size() || g.metadata() != f.metadata()) fail("round trip lost tensors or metadata");
    for (const attn::io::SafetensorsEntry& e : f.tensors()) {
      const attn::io::SafetensorsEntry& r = g.at(e.name);
      if (r.dtype != e.dtype || r.shape != e.shape || r.nbytes() != e.nbytes() ||
          (e.nbytes() > 0 && std::memcmp(r.data, e.data, e.nbytes()) != 0))
        fail("round trip changed a tensor");
    }
    if (checksum == 0xFFFFFFFFu) std::fprintf(stderr, "%u\n", checksum);  // keeps the reads
  } catch (const attn::Error&) {
  }
  return 0;
}
