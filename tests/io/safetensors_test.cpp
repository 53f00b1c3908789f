// safetensors reader and writer: round trips of every dtype and rank, metadata, alignment, and
// every kind of corrupt file (each parsed from an exactly sized heap buffer, so ASan sees any read
// past its end).

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "attn/error.hpp"
#include "attn/io/safetensors.hpp"

namespace {

using attn::DType;
using attn::Tensor;
using attn::TensorView;
using attn::io::SafetensorsFile;
using attn::io::SafetensorsRecord;

std::vector<std::byte> bytes_of(const std::string& s) {
  std::vector<std::byte> b(s.size());
  std::memcpy(b.data(), s.data(), s.size());
  return b;
}

// A file from a header text and `data_size` data bytes (0, 1, 2, ...), the length field set to
// `length` (default: the header's length).
std::vector<std::byte> make_file(const std::string& header, std::size_t data_size,
                                 std::optional<std::uint64_t> length = std::nullopt) {
  std::uint64_t n = length.value_or(header.size());
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i, n >>= 8) s[std::size_t(i)] = char(n & 0xFF);
  s += header;
  for (std::size_t i = 0; i < data_size; ++i) s += char(i & 0xFF);
  return bytes_of(s);
}

// The message of the attn::Error that parsing `bytes` throws ("" when it does not throw).
std::string parse_error(const std::vector<std::byte>& bytes) {
  std::vector<std::byte> exact(bytes);  // exactly sized: ASan catches reads past the end
  try {
    (void)SafetensorsFile::parse(exact, "f.safetensors");
  } catch (const attn::Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_PARSE_ERROR(bytes, ...)                                                    \
  do {                                                                                    \
    const std::string msg = parse_error(bytes);                                           \
    ASSERT_FALSE(msg.empty()) << "no error";                                              \
    for (const char* part : {__VA_ARGS__}) EXPECT_NE(msg.find(part), std::string::npos) << msg; \
  } while (0)

Tensor filled(DType dtype, std::initializer_list<std::int64_t> shape, std::uint64_t seed) {
  Tensor t(dtype, shape);
  std::mt19937_64 rng(seed);
  auto* p = static_cast<unsigned char*>(t.data());
  const std::size_t n = std::size_t(t.numel()) * attn::dtype_size(dtype);
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(rng());
  if (dtype == DType::boolean)
    for (std::size_t i = 0; i < n; ++i) p[i] &= 1;
  return t;
}

bool same_bytes(const TensorView& a, const TensorView& b) {
  if (a.dtype != b.dtype || a.rank != b.rank || a.shape != b.shape) return false;
  return std::memcmp(a.data, b.data, std::size_t(a.numel()) * attn::dtype_size(a.dtype)) == 0;
}

const std::string kGood =
    R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
    R"("b":{"dtype":"I64","shape":[2],"data_offsets":[24,40]},"c":{"dtype":"BF16","shape":[4],"data_offsets":[40,48]}})";
constexpr std::size_t kGoodData = 48;

TEST(Safetensors, RoundTripEveryDtypeAndRank) {
  const DType dtypes[] = {DType::f32, DType::f64, DType::bf16, DType::f16,
                          DType::i8,  DType::i32, DType::i64,  DType::boolean};
  std::vector<Tensor> owned;
  std::vector<std::pair<std::string, TensorView>> tensors;
  std::uint64_t seed = 1;
  for (DType d : dtypes) {
    owned.push_back(filled(d, {7}, seed++));
    owned.push_back(filled(d, {3, 5}, seed++));
    owned.push_back(filled(d, {2, 1, 3}, seed++));
    owned.push_back(filled(d, {2, 3, 1, 5}, seed++));
    owned.push_back(filled(d, {0, 4}, seed++));  // empty
  }
  for (std::size_t i = 0; i < owned.size(); ++i) tensors.emplace_back(std::string("t").append(std::to_string(i)), owned[i].view());
  const attn::io::Metadata meta{{"format", "pt"}, {"note", "ünïcode ✓"}};
  const std::string path = (std::filesystem::temp_directory_path() / "attn_io_roundtrip.safetensors").string();
  attn::io::save_safetensors(path, tensors, meta);
  const SafetensorsFile f = SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata(), meta);
  ASSERT_EQ(f.tensors().size(), tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto& e = f.at(tensors[i].first);
    EXPECT_EQ(e.dtype, attn::io::safetensors_dtype_name(tensors[i].second.dtype));
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(e.data) % attn::dtype_size(tensors[i].second.dtype), 0u)
        << "the writer aligns every tensor to its element size";
    EXPECT_TRUE(same_bytes(e.view(), tensors[i].second)) << tensors[i].first;
    EXPECT_TRUE(same_bytes(e.to_tensor().view(), tensors[i].second)) << tensors[i].first;
  }
  // File order: larger elements first, otherwise the order given.
  std::vector<std::string> expected;
  for (std::size_t size : {8, 4, 2, 1})
    for (const auto& [name, v] : tensors)
      if (attn::dtype_size(v.dtype) == size) expected.push_back(name);
  for (std::size_t i = 0; i < tensors.size(); ++i) EXPECT_EQ(f.tensors()[i].name, expected[i]);
  std::remove(path.c_str());
}

TEST(Safetensors, StridedViewIsWrittenRowMajor) {
  Tensor base = filled(DType::f32, {4, 6}, 9);
  const TensorView t = base.view().permute({1, 0});  // [6, 4], not contiguous
  std::vector<std::pair<std::string, TensorView>> one{{"t", t}};
  const std::vector<std::byte> bytes = attn::io::serialize_safetensors(one);
  const SafetensorsFile f = SafetensorsFile::parse(bytes);
  const TensorView r = f.at("t").view();
  ASSERT_EQ(r.shape_string(), "[6, 4]");
  for (std::int64_t i = 0; i < 6; ++i)
    for (std::int64_t j = 0; j < 4; ++j)
      EXPECT_EQ(attn::load_f64(r, i * 4 + j), attn::load_f64(t, t.offset({i, j})));
}

TEST(Safetensors, RecordsOfAnyRankAndForeignDtypes) {
  const std::vector<std::byte> one(4, std::byte{1}), five(32 * 4, std::byte{2}), u8(3, std::byte{3});
  const std::vector<SafetensorsRecord> records{
      {"scalar", "F32", {}, one}, {"rank5", "F32", {2, 2, 2, 2, 2}, five}, {"u8", "U8", {3}, u8}};
  const std::vector<std::byte> bytes = attn::io::serialize_safetensors(records);
  const SafetensorsFile f = SafetensorsFile::parse(bytes);
  EXPECT_EQ(f.at("scalar").numel(), 1);
  EXPECT_EQ(f.at("rank5").shape.size(), 5u);
  EXPECT_EQ(std::memcmp(f.at("u8").data, u8.data(), 3), 0);
  const auto error_of = [](auto&& fn) {
    try {
      fn();
    } catch (const attn::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of([&] { (void)f.at("scalar").view(); }).find("tensor \"scalar\": has shape []"), std::string::npos);
  EXPECT_NE(error_of([&] { (void)f.at("rank5").to_tensor(); }).find("rank 1 to 4"), std::string::npos);
  EXPECT_NE(error_of([&] { (void)f.at("u8").view(); }).find("has dtype U8, which attn does not have"), std::string::npos);
  EXPECT_NE(error_of([&] { (void)f.at("nope"); }).find("has no tensor \"nope\""), std::string::npos);
}

TEST(Safetensors, WriterRefusesBadRecords) {
  const std::vector<std::byte> four(4);
  const auto error_of = [&](std::vector<SafetensorsRecord> r) {
    try {
      (void)attn::io::serialize_safetensors(r);
    } catch (const attn::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of({{"a", "F32", {2}, four}}).find("has 4 bytes, but its shape and dtype F32 need 8"), std::string::npos);
  EXPECT_NE(error_of({{"a", "F9", {1}, four}}).find("unknown dtype \"F9\""), std::string::npos);
  EXPECT_NE(error_of({{"a", "F32", {1}, four}, {"a", "F32", {1}, four}}).find("appears twice"), std::string::npos);
  EXPECT_NE(error_of({{"__metadata__", "F32", {1}, four}}).find("reserved"), std::string::npos);
  EXPECT_NE(error_of({{"", "F32", {1}, four}}).find("empty name"), std::string::npos);
}

TEST(Safetensors, UnpaddedHeaderGivesUnalignedDataThatViewRefuses) {
  // Header of odd length: "a" starts at file offset 8 + 45, not 4-byte aligned.
  const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::vector<std::byte> bytes = make_file(header, 4);
  ASSERT_NE((8 + header.size()) % 4, 0u);
  // Copy into 8-byte aligned storage so the misalignment is the file's, not the buffer's.
  std::vector<std::uint64_t> storage((bytes.size() + 7) / 8);
  std::memcpy(storage.data(), bytes.data(), bytes.size());
  const SafetensorsFile f = SafetensorsFile::parse({reinterpret_cast<const std::byte*>(storage.data()), bytes.size()});
  try {
    (void)f.at("a").view();
    ADD_FAILURE() << "no error";
  } catch (const attn::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not aligned"), std::string::npos) << e.what();
  }
  const Tensor t = f.at("a").to_tensor();
  EXPECT_EQ(std::memcmp(t.data(), bytes.data() + 8 + header.size(), 4), 0);
}

TEST(Safetensors, GoodHandWrittenFileParses) {
  const SafetensorsFile f = SafetensorsFile::parse(make_file(kGood, kGoodData));
  EXPECT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.at("b").begin, 24u);
}

TEST(Safetensors, TruncatedAtEveryPoint) {
  const std::vector<std::byte> good = make_file(kGood, kGoodData);
  const std::size_t n = kGood.size();
  for (std::size_t cut : {std::size_t(0), std::size_t(1), std::size_t(7), std::size_t(8), 8 + n / 2, 8 + n - 1, 8 + n,
                          8 + n + 1, 8 + n + 24, good.size() - 1}) {
    const std::vector<std::byte> part(good.begin(), good.begin() + std::ptrdiff_t(cut));
    const std::string msg = parse_error(part);
    EXPECT_FALSE(msg.empty()) << "cut at " << cut;
    if (cut < 8) {
      EXPECT_NE(msg.find("shorter than the 8-byte header length"), std::string::npos) << msg;
    } else if (cut < 8 + n) {
      EXPECT_NE(msg.find("reaches past the end of the file"), std::string::npos) << msg;
    } else {
      EXPECT_NE(msg.find("reach past the data section"), std::string::npos) << msg;  // names the tensor
      EXPECT_NE(msg.find("tensor \""), std::string::npos) << msg;
    }
  }
  // Every cut of every byte count is an error, never a crash (ASan checks the reads).
  for (std::size_t cut = 0; cut < good.size(); ++cut)
    EXPECT_FALSE(parse_error({good.begin(), good.begin() + std::ptrdiff_t(cut)}).empty()) << cut;
}

TEST(Safetensors, HeaderLengths) {
  EXPECT_PARSE_ERROR(make_file(kGood, kGoodData, kGood.size() + kGoodData + 1), "reaches past the end of the file");
  EXPECT_PARSE_ERROR(make_file(kGood, kGoodData, std::uint64_t(1) << 63), "is above the limit of 100000000 bytes");
  EXPECT_PARSE_ERROR(make_file(kGood, kGoodData, ~std::uint64_t(0)), "is above the limit");
  EXPECT_PARSE_ERROR(make_file(kGood, kGoodData, 100'000'001), "is above the limit");
  EXPECT_PARSE_ERROR(make_file("{}", 0, 1), "too short");
  // A length that cuts the JSON short, or takes data bytes into it.
  EXPECT_PARSE_ERROR(make_file(kGood, kGoodData, kGood.size() - 1), "not valid JSON");
  EXPECT_PARSE_ERROR(make_file(kGood, kGoodData, kGood.size() + 3), "has a NUL byte (byte 199 of the header)");
  EXPECT_PARSE_ERROR(make_file(std::string("{}\0", 3), 0), "NUL byte");
}

std::string one_tensor(const std::string& dtype, const std::string& shape, const std::string& offsets) {
  return R"({"x":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}}";
}

TEST(Safetensors, ShapeTimesDtypeMustEqualTheByteRange) {
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[2,3]", "[0,20]"), 20),
                     "tensor \"x\"", "shape [2, 3] of F32 needs 24 bytes, but data_offsets [0, 20] cover 20");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F16", "[3]", "[0,8]"), 8), "needs 6 bytes");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[]", "[0,8]"), 8), "needs 4 bytes");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[4294967296,4294967296]", "[0,8]"), 8), "more than 2^63 elements");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[0,4294967296,4294967296]", "[0,0]"), 0), "more than 2^63 elements");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F64", "[4611686018427387904]", "[0,8]"), 8), "more than 2^64 bytes");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[-1]", "[0,4]"), 4), "has a shape entry -1, expected shape entries to be non-negative integers");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[1.5]", "[0,4]"), 4), "has a shape entry 1.5, expected");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[\"1\"]", "[0,4]"), 4), "non-negative integers");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[18446744073709551615]", "[0,4]"), 4), "too large");
}

TEST(Safetensors, OffsetsOutOfRangeOverlappingOrWithHoles) {
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[1]", "[4,8]"), 4), "tensor \"x\"", "reach past the data section");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[1]", "[8,4]"), 8), "end before they begin");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[1]", "[0]"), 4), "two integers");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[1]", "[0,-4]"), 4), "expected data_offsets entries to be non-negative");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[1]", "[18446744073709551612,0]"), 4), "end before they begin");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[1]", "[0,18446744073709551615]"), 4), "reach past the data section");
  const std::string overlap = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  EXPECT_PARSE_ERROR(make_file(overlap, 12), "tensors \"a\" [0, 8) and \"b\" [4, 12) overlap");
  const std::string same = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_PARSE_ERROR(make_file(same, 8), "overlap");
  const std::string empty_inside = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})";
  EXPECT_PARSE_ERROR(make_file(empty_inside, 8), "\"a\" [0, 8) and \"e\" [4, 4) overlap");
  const std::string hole = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  EXPECT_PARSE_ERROR(make_file(hole, 12), "bytes [4, 8) of the data section belong to no tensor", "after \"a\"");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[1]", "[4,8]"), 8), "bytes [0, 4)", "at the start");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F32", "[1]", "[0,4]"), 9), "trailing bytes");
  // Zero-size tensors at a boundary are fine.
  const std::string empties = R"({"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                              R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                              R"("z":{"dtype":"F32","shape":[3,0],"data_offsets":[4,4]}})";
  EXPECT_EQ(parse_error(make_file(empties, 4)), "");
}

TEST(Safetensors, DtypeNames) {
  EXPECT_PARSE_ERROR(make_file(one_tensor("Q7", "[1]", "[0,4]"), 4), "tensor \"x\"", "unknown dtype \"Q7\"");
  EXPECT_PARSE_ERROR(make_file(one_tensor("f32", "[1]", "[0,4]"), 4), "unknown dtype \"f32\"");
  EXPECT_PARSE_ERROR(make_file(one_tensor("F4", "[2]", "[0,1]"), 1), "unknown dtype \"F4\"");
  // Known to the format but not to attn: readable as bytes, refused as an attn tensor.
  EXPECT_EQ(parse_error(make_file(one_tensor("U16", "[2]", "[0,4]"), 4)), "");
}

TEST(Safetensors, NonUtf8Json) {
  for (const std::string& bad : {std::string("\xff"), std::string("\xc0\xaf"), std::string("\xed\xa0\x80"),
                                std::string("\xf4\x90\x80\x80"), std::string("\xe2\x82"), std::string("\x80")}) {
    const std::string header = R"({"x)" + bad + R"(":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
    EXPECT_PARSE_ERROR(make_file(header, 4), "header is not valid UTF-8 (byte 3 of the header)");
  }
  const std::string ok = R"({"x€😀":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  EXPECT_EQ(parse_error(make_file(ok, 4)), "");
}

TEST(Safetensors, BadJsonAndBadStructure) {
  EXPECT_PARSE_ERROR(make_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})", 4), "not valid JSON");
  EXPECT_PARSE_ERROR(make_file("[1, 2]", 0), "header is a JSON array, expected a JSON object");
  EXPECT_PARSE_ERROR(make_file(R"({"x": 3})", 0), "tensor \"x\"", "is a JSON number, expected a JSON object");
  EXPECT_PARSE_ERROR(make_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}})", 4),
                     "unexpected field \"extra\"");
  EXPECT_PARSE_ERROR(make_file(R"({"x":{"shape":[1],"data_offsets":[0,4]}})", 4), "has no string field \"dtype\", expected one");
  EXPECT_PARSE_ERROR(make_file(R"({"x":{"dtype":"F32","data_offsets":[0,4]}})", 4), "has no array field \"shape\", expected one");
  EXPECT_PARSE_ERROR(make_file(R"({"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4), "empty name");
  EXPECT_PARSE_ERROR(make_file(R"({"__metadata__":{"a":1}})", 0), "__metadata__[\"a\"] is a JSON number, expected a string");
  EXPECT_PARSE_ERROR(make_file(R"({"__metadata__":[]})", 0), "__metadata__ is a JSON array, expected a JSON object of strings");
  EXPECT_PARSE_ERROR(make_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                               R"("x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4),
                     "the key \"x\" appears twice");
  EXPECT_PARSE_ERROR(make_file(R"({"x":{"dtype":"F32","dtype":"F64","shape":[1],"data_offsets":[0,4]}})", 4),
                     "the key \"dtype\" appears twice");
  // Deep nesting is a JSON error or a structure error, never a stack overflow.
  EXPECT_PARSE_ERROR(make_file(R"({"x":)" + std::string(100000, '[') + std::string(100000, ']') + "}", 0),
                     "tensor \"x\"");
  // Trailing spaces (the writer's padding) are fine; an empty object is an empty file.
  EXPECT_EQ(parse_error(make_file("{}      ", 0)), "");
}

TEST(Safetensors, OpenErrors) {
  try {
    (void)SafetensorsFile::open("/nonexistent/attn.safetensors");
    ADD_FAILURE();
  } catch (const attn::Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open \"/nonexistent/attn.safetensors\""), std::string::npos);
  }
  try {
    (void)SafetensorsFile::open(std::filesystem::temp_directory_path().string());
    ADD_FAILURE();
  } catch (const attn::Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not a regular file"), std::string::npos);
  }
  const std::string path = (std::filesystem::temp_directory_path() / "attn_io_empty.safetensors").string();
  std::fclose(std::fopen(path.c_str(), "wb"));
  try {
    (void)SafetensorsFile::open(path);
    ADD_FAILURE();
  } catch (const attn::Error& e) {
    EXPECT_NE(std::string(e.what()).find("is 0 bytes, shorter than the 8-byte header length"), std::string::npos);
  }
  std::remove(path.c_str());
}

}  // namespace
