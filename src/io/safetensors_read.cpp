// The safetensors reader: memory-maps a file and validates the header (docs/io.md lists every
// check) before any tensor byte is touched. Validation is all in validate(); open() only maps.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "attn/error.hpp"
#include "attn/io/safetensors.hpp"
#include "io/safetensors_dtypes.hpp"
#include "io/utf8.hpp"

namespace attn::io {

using nlohmann::json;

struct SafetensorsFile::Mapping {
  void* base = nullptr;
  std::size_t size = 0;
  ~Mapping() {
    if (base) ::munmap(base, size);
  }
};

SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

namespace {

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t a = 0; a < shape.size(); ++a) s += (a ? ", " : "") + std::to_string(shape[a]);
  return s + "]";
}

// nlohmann keeps the last of duplicate keys; the format forbids them, so a parser callback
// rejects them (one key set per open object).
json parse_header(const char* first, const char* last, const std::string& source) {
  std::vector<std::set<std::string>> open_objects;
  const json::parser_callback_t reject_duplicates = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) open_objects.emplace_back();
    if (event == json::parse_event_t::object_end && !open_objects.empty()) open_objects.pop_back();
    if (event == json::parse_event_t::key && !open_objects.empty() &&
        !open_objects.back().insert(parsed.get<std::string>()).second)
      throw Error(ErrorKind::value, source,
                  "header: the key \"" + parsed.get<std::string>() +
                      "\" appears twice in one JSON object, expected each key once (the format forbids duplicates)");
    return true;
  };
  try {
    return json::parse(first, last, reject_duplicates);
  } catch (const json::exception& e) {
    throw Error(ErrorKind::value, source, std::string("header is not valid JSON, expected a JSON object (") + e.what() + ")");
  }
}

std::int64_t checked_dim(const json& d, const std::string& where) {
  ATTN_CHECK(d.is_number_integer() && (d.is_number_unsigned() || d.get<std::int64_t>() >= 0), value, where,
             "has a shape entry ", d.dump(), ", expected shape entries to be non-negative integers");
  ATTN_CHECK(!d.is_number_unsigned() || d.get<std::uint64_t>() <= std::uint64_t(std::numeric_limits<std::int64_t>::max()),
             value, where, "has a shape entry ", d.dump(), " that is too large, expected at most 2^63 - 1");
  return d.get<std::int64_t>();
}

std::uint64_t checked_offset(const json& o, const std::string& where) {
  ATTN_CHECK(o.is_number_integer() && (o.is_number_unsigned() || o.get<std::int64_t>() >= 0), value, where,
             "has a data_offsets entry ", o.dump(), ", expected data_offsets entries to be non-negative integers");
  return o.get<std::uint64_t>();
}

SafetensorsEntry parse_entry(const std::string& name, const json& info, std::uint64_t data_size,
                             const std::string& source) {
  const std::string where = source + ": tensor \"" + name + "\"";
  ATTN_CHECK(info.is_object(), value, where, "is a JSON ", info.type_name(), ", expected a JSON object");
  for (const auto& [key, field] : info.items())
    ATTN_CHECK(key == "dtype" || key == "shape" || key == "data_offsets", value, where, "has an unexpected field \"",
               key, "\", expected only dtype, shape, data_offsets");
  ATTN_CHECK(info.contains("dtype") && info["dtype"].is_string(), value, where,
             "has no string field \"dtype\", expected one");
  ATTN_CHECK(info.contains("shape") && info["shape"].is_array(), value, where,
             "has no array field \"shape\", expected one");
  ATTN_CHECK(info.contains("data_offsets") && info["data_offsets"].is_array() && info["data_offsets"].size() == 2,
             value, where, "has no valid field \"data_offsets\", expected one of two integers [begin, end]");
  SafetensorsEntry e;
  e.name = name;
  e.dtype = info["dtype"].get<std::string>();
  const std::optional<std::uint64_t> esize = safetensors_dtype_bytes(e.dtype);
  ATTN_CHECK(esize.has_value(), value, where, "has unknown dtype \"", e.dtype, "\", expected one of ",
             kKnownSafetensorsDtypes);
  // The strides of a row-major view (products of max(dim, 1)) must fit in int64, even when a zero
  // dim makes the tensor empty.
  std::uint64_t numel = 1;
  std::int64_t stride_span = 1;
  for (const json& d : info["shape"]) {
    e.shape.push_back(checked_dim(d, where));
    ATTN_CHECK(!__builtin_mul_overflow(stride_span, std::max<std::int64_t>(e.shape.back(), 1), &stride_span), value,
               where, "has shape ", info["shape"].dump(), " with more than 2^63 elements, expected fewer");
    numel *= std::uint64_t(e.shape.back());
  }
  std::uint64_t nbytes = 0;
  ATTN_CHECK(!__builtin_mul_overflow(numel, *esize, &nbytes), value, where, "has shape ", shape_string(e.shape),
             " of ", e.dtype, ", which needs more than 2^64 bytes, expected fewer");
  e.begin = checked_offset(info["data_offsets"][0], where);
  e.end = checked_offset(info["data_offsets"][1], where);
  ATTN_CHECK(e.begin <= e.end, value, where, "has data_offsets [", e.begin, ", ", e.end,
             "], which end before they begin, expected begin <= end");
  ATTN_CHECK(e.end <= data_size, value, where, "has data_offsets [", e.begin, ", ", e.end,
             "], which reach past the data section, expected end <= ", data_size,
             " (the file is truncated or the offsets are wrong)");
  ATTN_CHECK(e.nbytes() == nbytes, value, where, "shape ", shape_string(e.shape), " of ", e.dtype, " needs ", nbytes,
             " bytes, but data_offsets [", e.begin, ", ", e.end, "] cover ", e.nbytes(), ", expected them to cover ",
             nbytes);
  return e;
}

Metadata parse_metadata(const json& m, const std::string& source) {
  ATTN_CHECK(m.is_object(), value, source, "__metadata__ is a JSON ", m.type_name(),
             ", expected a JSON object of strings");
  Metadata out;
  for (const auto& [key, value] : m.items()) {
    ATTN_CHECK(value.is_string(), value, source, "__metadata__[\"", key, "\"] is a JSON ", value.type_name(),
               ", expected a string");
    out.emplace(key, value.get<std::string>());
  }
  return out;
}

// The tensors, sorted by offsets, must tile the data section exactly: no overlap, no hole, nothing
// after the last one.
void check_tiling(const std::vector<SafetensorsEntry>& sorted, std::uint64_t data_size, const std::string& source) {
  std::uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry& e : sorted) {
    ATTN_CHECK(e.begin >= covered, value, source, "tensors \"", previous->name, "\" [", previous->begin, ", ",
               previous->end, ") and \"", e.name, "\" [", e.begin, ", ", e.end,
               ") overlap, expected disjoint byte ranges");
    ATTN_CHECK(e.begin == covered, value, source, "bytes [", covered, ", ", e.begin,
               ") of the data section belong to no tensor (",
               previous ? "after \"" + previous->name + "\", " : std::string("at the start, "), "before \"", e.name,
               "\"), expected no holes (the format allows none)");
    covered = e.end;
    if (e.nbytes() > 0) previous = &e;
  }
  ATTN_CHECK(covered == data_size, value, source, "the data section has ", data_size, " bytes but the tensors cover ",
             covered, ", expected them to cover all of it (trailing bytes after the last tensor)");
}

}  // namespace

SafetensorsFile SafetensorsFile::parse(std::span<const std::byte> bytes, std::string source) {
  SafetensorsFile f;
  f.source_ = std::move(source);
  const std::string& src = f.source_;
  ATTN_CHECK(bytes.size() >= 8, value, src, "is ", bytes.size(),
             " bytes, shorter than the 8-byte header length, expected at least 8 bytes");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | std::uint64_t(std::to_integer<unsigned char>(bytes[std::size_t(i)]));
  ATTN_CHECK(n <= kMaxHeaderBytes, value, src, "header length ", n, " is above the limit of ", kMaxHeaderBytes,
             " bytes, expected at most that");
  ATTN_CHECK(n <= bytes.size() - 8, value, src, "header length ", n, " reaches past the end of the file, expected <= ",
             bytes.size() - 8, " (the file has ", bytes.size(), " bytes; truncated?)");
  ATTN_CHECK(n >= 2, value, src, "header length ", n, " is too short for a JSON object, expected >= 2");
  const char* header = reinterpret_cast<const char*>(bytes.data() + 8);
  if (const std::optional<std::size_t> bad = first_invalid_utf8(std::string_view(header, n)))
    throw Error(ErrorKind::value, src,
                detail::concat("header is not valid UTF-8 (byte ", *bad, " of the header), expected UTF-8"));
  // nlohmann stops at a NUL byte after a complete value; JSON has no raw NUL anywhere.
  if (const void* nul = std::memchr(header, 0, n))
    throw Error(ErrorKind::value, src,
                detail::concat("header has a NUL byte (byte ", static_cast<const char*>(nul) - header,
                               " of the header), expected none (JSON does not allow it; is the header length right?)"));
  const json j = parse_header(header, header + n, src);
  ATTN_CHECK(j.is_object(), value, src, "header is a JSON ", j.type_name(), ", expected a JSON object");
  const std::uint64_t data_size = bytes.size() - 8 - n;
  const std::byte* data = bytes.data() + 8 + n;
  for (const auto& [name, info] : j.items()) {
    if (name == "__metadata__") {
      f.metadata_ = parse_metadata(info, src);
      continue;
    }
    ATTN_CHECK(!name.empty(), value, src, "a tensor has an empty name, expected a non-empty name");
    f.entries_.push_back(parse_entry(name, info, data_size, src));
    f.entries_.back().data = data + f.entries_.back().begin;
  }
  std::sort(f.entries_.begin(), f.entries_.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  check_tiling(f.entries_, data_size, src);
  for (std::size_t i = 0; i < f.entries_.size(); ++i) f.index_.emplace(f.entries_[i].name, i);
  return f;
}

SafetensorsFile SafetensorsFile::open(const std::string& path, bool copy_on_write) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ATTN_CHECK(fd >= 0, system, "path", "cannot open \"", path, "\": ", std::strerror(errno), ", expected a readable file");
  struct stat st {};
  const bool ok = ::fstat(fd, &st) == 0;
  const int err = errno;
  if (!ok || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorKind::system, "path",
                "\"" + path + "\" " + (ok ? "is not a regular file" : std::string("fstat failed: ") + std::strerror(err)) +
                    ", expected a regular file");
  }
  auto mapping = std::make_unique<Mapping>();
  mapping->size = static_cast<std::size_t>(st.st_size);
  if (mapping->size > 0) {
    void* p = ::mmap(nullptr, mapping->size, PROT_READ | (copy_on_write ? PROT_WRITE : 0), MAP_PRIVATE, fd, 0);
    const int map_err = errno;
    ::close(fd);
    ATTN_CHECK(p != MAP_FAILED, system, "path", "cannot map \"", path, "\": ", std::strerror(map_err),
               ", expected a file that can be mapped");
    mapping->base = p;
  } else {
    ::close(fd);
  }
  SafetensorsFile f = parse({static_cast<const std::byte*>(mapping->base), mapping->size}, path);
  f.mapping_ = std::move(mapping);
  return f;
}

const SafetensorsEntry* SafetensorsFile::find(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

const SafetensorsEntry& SafetensorsFile::at(std::string_view name) const {
  const SafetensorsEntry* e = find(name);
  ATTN_CHECK(e != nullptr, value, source_, "has no tensor \"", name, "\", expected one of its ", entries_.size(),
             " tensors");
  return *e;
}

std::int64_t SafetensorsEntry::numel() const {
  std::int64_t n = 1;
  for (std::int64_t d : shape) n *= d;
  return n;
}

DType SafetensorsEntry::attn_dtype() const {
  const std::optional<DType> d = attn_dtype_of(dtype);
  ATTN_CHECK(d.has_value(), dtype, "tensor \"" + name + "\"", "has dtype ", dtype,
             ", which attn does not have, expected F32, F64, BF16, F16, I8, I32, I64 or BOOL");
  return *d;
}

namespace {
TensorView row_major_view(const SafetensorsEntry& e, DType dtype, void* data) {
  ATTN_CHECK(!e.shape.empty() && e.shape.size() <= std::size_t(kMaxRank), shape, "tensor \"" + e.name + "\"",
             "has shape ", shape_string(e.shape), ", expected rank 1 to ", kMaxRank, " (the ranks of attn tensors)");
  TensorView v;
  v.data = data;
  v.dtype = dtype;
  v.rank = static_cast<int>(e.shape.size());
  std::int64_t stride = 1;
  for (int a = v.rank - 1; a >= 0; --a) {
    v.shape[a] = e.shape[std::size_t(a)];
    v.strides[a] = stride;
    stride *= std::max<std::int64_t>(v.shape[a], 1);
  }
  return v;
}
}  // namespace

TensorView SafetensorsEntry::view() const {
  const DType d = attn_dtype();
  ATTN_CHECK(reinterpret_cast<std::uintptr_t>(data) % dtype_size(d) == 0, layout, "tensor \"" + name + "\"",
             "starts at data offset ", begin, ", not aligned to its ", dtype_size(d),
             "-byte elements, expected an aligned offset (the writer did not pad the header; use to_tensor() for an "
             "aligned copy)");
  return row_major_view(*this, d, const_cast<std::byte*>(data));
}

Tensor SafetensorsEntry::to_tensor() const {
  const DType d = attn_dtype();
  (void)row_major_view(*this, d, nullptr);  // rank check with the same message
  Tensor t(d, std::span<const std::int64_t>(shape));
  if (nbytes() > 0) std::memcpy(t.data(), data, nbytes());
  return t;
}

}  // namespace attn::io
