#pragma once
/// safetensors files (https://github.com/huggingface/safetensors, format described in docs/io.md):
/// an 8-byte little-endian header length N, N bytes of UTF-8 JSON
///   {"__metadata__": {"k": "v", ...}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
/// and the raw little-endian tensor bytes; offsets are relative to the byte after the header.
///
/// The reader memory-maps the file and validates everything before handing out a pointer: header
/// length against the file size (and at most kMaxHeaderBytes), UTF-8, JSON syntax, duplicate names,
/// dtype names, shapes (non-negative, no overflow), numel × dtype size = e − b, offsets inside the
/// data section, no overlaps and no holes (the format's rule). A bad file is an attn::Error naming
/// the tensor and the problem; no read ever leaves the mapping.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "attn/tensor.hpp"

namespace attn::io {

/// Header lengths above this (100 MB, the limit of the reference implementation) are refused.
inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

/// Metadata of a file: the string-to-string `__metadata__` object, ordered by key.
using Metadata = std::map<std::string, std::string>;

/// The safetensors name of an attn dtype: F32, F64, BF16, F16, I8, I32, I64, BOOL.
const char* safetensors_dtype_name(DType dtype);
/// The attn dtype of a safetensors dtype name, or nullopt for the format's dtypes attn does not
/// have (U8, I16, U16, U32, U64, F8_E4M3, F8_E5M2, ...) and for unknown names.
std::optional<DType> attn_dtype_of(std::string_view safetensors_name);

/// One tensor of an open file. `data` points into the mapping (valid while the file object lives)
/// and may be unaligned for the dtype when the writer did not pad the header.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;                 ///< the file's dtype name ("F32", "U8", ...)
  std::vector<std::int64_t> shape;   ///< any rank, [] for a scalar
  std::uint64_t begin = 0, end = 0;  ///< byte offsets in the data section
  const std::byte* data = nullptr;   ///< begin's address in the mapping

  std::uint64_t nbytes() const { return end - begin; }
  std::int64_t numel() const;
  /// attn's dtype; throws attn::Error naming the tensor for dtypes attn does not have.
  DType attn_dtype() const;
  /// A read-only, zero-copy row-major view (cast away const only to call attn's APIs on inputs).
  /// Throws when the dtype is not attn's, the rank is 0 or above kMaxRank, or `data` is not aligned
  /// to the element size (then use to_tensor()).
  TensorView view() const;
  /// An owning, aligned copy. Same dtype and rank rules as view() but no alignment requirement.
  Tensor to_tensor() const;
};

/// A validated safetensors file, memory-mapped read-only (or a validated caller-owned buffer).
class SafetensorsFile {
 public:
  /// Maps and validates `path`. Throws attn::Error("path", ...) for I/O errors and for bad files.
  /// copy_on_write: the pages are mapped private and writable, so the tensor memory may be
  /// written (the Python package hands out writable arrays); writes never reach the file.
  static SafetensorsFile open(const std::string& path, bool copy_on_write = false);
  /// Validates bytes owned by the caller (kept alive by them while the object is used); for tests,
  /// fuzzing and in-memory files. `source` names the bytes in errors.
  static SafetensorsFile parse(std::span<const std::byte> bytes, std::string source = "buffer");

  /// Tensors in the order of their data offsets.
  const std::vector<SafetensorsEntry>& tensors() const { return entries_; }
  const Metadata& metadata() const { return metadata_; }
  /// The entry called `name`, or nullptr.
  const SafetensorsEntry* find(std::string_view name) const;
  /// The entry called `name`; throws attn::Error naming it (and the file) when absent.
  const SafetensorsEntry& at(std::string_view name) const;
  const std::string& source() const { return source_; }

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

 private:
  SafetensorsFile() = default;
  struct Mapping;
  std::unique_ptr<Mapping> mapping_;
  std::string source_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::size_t, std::less<>> index_;
  Metadata metadata_;
};

/// A tensor to write: any rank (`shape` as given, [] for a scalar), the bytes of its row-major
/// elements (little-endian), and its safetensors dtype name.
struct SafetensorsRecord {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> bytes;
};

/// The file's bytes: header (padded with spaces to a multiple of 8) then the tensors, larger
/// element sizes first and otherwise in the order given, so every tensor is aligned to its element
/// size in a mapped file. Throws attn::Error for empty,
/// duplicate or reserved ("__metadata__") names, unknown dtypes and byte counts that disagree with
/// the shape.
std::vector<std::byte> serialize_safetensors(std::span<const SafetensorsRecord> records, const Metadata& metadata = {});
/// The same for attn views (any strides; copied row-major).
std::vector<std::byte> serialize_safetensors(std::span<const std::pair<std::string, TensorView>> tensors,
                                             const Metadata& metadata = {});
/// Writes the bytes to `path` (through a temporary file renamed into place).
void save_safetensors(const std::string& path, std::span<const SafetensorsRecord> records, const Metadata& metadata = {});
void save_safetensors(const std::string& path, std::span<const std::pair<std::string, TensorView>> tensors,
                      const Metadata& metadata = {});

}  // namespace attn::io
