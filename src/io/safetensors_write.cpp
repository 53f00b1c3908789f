// The safetensors writer: JSON header (nlohmann-json) padded with spaces to a multiple of 8 bytes,
// then the tensors back to back, larger elements first (stable, as the Python package does), so
// every tensor starts aligned to its element size in a mapped file.

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "attn/error.hpp"
#include "attn/io/safetensors.hpp"
#include "io/safetensors_dtypes.hpp"

namespace attn::io {

using nlohmann::ordered_json;

std::vector<std::byte> serialize_safetensors(std::span<const SafetensorsRecord> records, const Metadata& metadata) {
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json m = ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  std::vector<const SafetensorsRecord*> order;
  for (const SafetensorsRecord& r : records) order.push_back(&r);
  const auto esize_of = [](const SafetensorsRecord* r) { return safetensors_dtype_bytes(r->dtype).value_or(0); };
  std::stable_sort(order.begin(), order.end(), [&](auto* a, auto* b) { return esize_of(a) > esize_of(b); });
  std::set<std::string> names;
  std::uint64_t offset = 0;
  for (const SafetensorsRecord* rp : order) {
    const SafetensorsRecord& r = *rp;
    const std::string where = "tensor \"" + r.name + "\"";
    ATTN_CHECK(!r.name.empty(), value, "tensors", "a tensor has an empty name, expected a non-empty name");
    ATTN_CHECK(r.name != "__metadata__", value, where,
               "uses the reserved name __metadata__, expected another name (the header's metadata key)");
    ATTN_CHECK(names.insert(r.name).second, value, where, "appears twice, expected each name once");
    const std::optional<std::uint64_t> esize = safetensors_dtype_bytes(r.dtype);
    ATTN_CHECK(esize.has_value(), dtype, where, "has unknown dtype \"", r.dtype, "\", expected one of ",
               kKnownSafetensorsDtypes);
    std::uint64_t numel = 1;
    for (std::int64_t d : r.shape) {
      ATTN_CHECK(d >= 0, shape, where, "has a negative dimension ", d, ", expected dimensions >= 0");
      numel *= std::uint64_t(d);
    }
    ATTN_CHECK(numel * *esize == r.bytes.size(), shape, where, "has ", r.bytes.size(), " bytes, but its shape and dtype ",
               r.dtype, " need ", numel * *esize, ", expected ", numel * *esize, " bytes");
    header[r.name] = {{"dtype", r.dtype}, {"shape", r.shape}, {"data_offsets", {offset, offset + r.bytes.size()}}};
    offset += r.bytes.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<std::byte> out(8 + text.size() + offset);
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i, n >>= 8) out[std::size_t(i)] = std::byte(n & 0xFF);
  std::memcpy(out.data() + 8, text.data(), text.size());
  std::byte* p = out.data() + 8 + text.size();
  for (const SafetensorsRecord* r : order) {
    if (!r->bytes.empty()) std::memcpy(p, r->bytes.data(), r->bytes.size());
    p += r->bytes.size();
  }
  return out;
}

namespace {
// Row-major bytes of a strided view (a copy only when the view is not contiguous).
std::vector<std::byte> row_major_bytes(const TensorView& v) {
  const std::size_t esize = dtype_size(v.dtype);
  std::vector<std::byte> out(std::size_t(v.numel()) * esize);
  if (out.empty()) return out;
  std::array<std::int64_t, kMaxRank> idx{};
  std::byte* dst = out.data();
  for (std::int64_t e = 0; e < v.numel(); ++e) {
    std::int64_t off = 0;
    for (int a = 0; a < v.rank; ++a) off += idx[std::size_t(a)] * v.strides[std::size_t(a)];
    std::memcpy(dst, v.at(off), esize);
    dst += esize;
    for (int a = v.rank - 1; a >= 0 && ++idx[std::size_t(a)] == v.shape[std::size_t(a)]; --a) idx[std::size_t(a)] = 0;
  }
  return out;
}

std::vector<std::byte> serialize_views(std::span<const std::pair<std::string, TensorView>> tensors,
                                       const Metadata& metadata) {
  std::vector<std::vector<std::byte>> copies;
  std::vector<SafetensorsRecord> records;
  copies.reserve(tensors.size());
  for (const auto& [name, v] : tensors) {
    ATTN_CHECK(v.defined(), value, "tensor \"" + name + "\"", "is an empty (undefined) view, expected a tensor");
    SafetensorsRecord r{name, safetensors_dtype_name(v.dtype), {v.shape.begin(), v.shape.begin() + v.rank}, {}};
    if (v.is_contiguous()) {
      r.bytes = {static_cast<const std::byte*>(v.data), std::size_t(v.numel()) * dtype_size(v.dtype)};
    } else {
      copies.push_back(row_major_bytes(v));
      r.bytes = copies.back();
    }
    records.push_back(std::move(r));
  }
  return serialize_safetensors(records, metadata);
}

void write_file(const std::string& path, const std::vector<std::byte>& bytes) {
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  ATTN_CHECK(f != nullptr, system, "path", "cannot create \"", tmp, "\": ", std::strerror(errno),
             ", expected a writable directory");
  const bool written = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  const bool closed = std::fclose(f) == 0;
  if (!written || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw Error(ErrorKind::system, "path",
                "cannot write \"" + path + "\": " + std::strerror(err) + ", expected a writable path");
  }
}
}  // namespace

std::vector<std::byte> serialize_safetensors(std::span<const std::pair<std::string, TensorView>> tensors,
                                             const Metadata& metadata) {
  return serialize_views(tensors, metadata);
}

void save_safetensors(const std::string& path, std::span<const SafetensorsRecord> records, const Metadata& metadata) {
  write_file(path, serialize_safetensors(records, metadata));
}

void save_safetensors(const std::string& path, std::span<const std::pair<std::string, TensorView>> tensors,
                      const Metadata& metadata) {
  write_file(path, serialize_views(tensors, metadata));
}

}  // namespace attn::io
