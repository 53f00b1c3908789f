// StateDict, its safetensors round trip and the strict / non-strict load reports.

#include "attn/io/state_dict.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "io/io_test_util.hpp"

namespace {

using attn::DType;
using attn::Tensor;
using attn::io::StateDict;
using attn::io::test::at;
using attn::io::test::error_of;
using attn::io::test::formula;

std::string temp_path(const char* name) { return (std::filesystem::temp_directory_path() / name).string(); }

TEST(StateDict, InsertFindAndErrors) {
  StateDict sd;
  sd.insert("b", Tensor(DType::f32, {2}));
  sd.insert("a", Tensor(DType::f32, {3}));
  EXPECT_EQ(sd.names(), (std::vector<std::string>{"b", "a"}));
  EXPECT_TRUE(sd.contains("a"));
  EXPECT_EQ(sd.find("c"), nullptr);
  EXPECT_NE(error_of([&] { sd.insert("a", Tensor(DType::f32, {1})); }).find("= \"a\", which the state dict already has"), std::string::npos);
  EXPECT_NE(error_of([&] { (void)sd.at("zz"); }).find("zz: is not in the state dict, expected one of its 2 keys"), std::string::npos);
  EXPECT_NE(error_of([&] { sd.insert("", Tensor(DType::f32, {1})); }).find("is empty, expected a non-empty state dict key"), std::string::npos);
}

TEST(StateDict, SafetensorsRoundTripKeepsOrderValuesAndMetadata) {
  StateDict sd;
  sd.insert("w", formula(DType::f32, {3, 4}, [](auto i, auto j) { return double(i * 10 + j); }));
  sd.insert("b", formula(DType::bf16, {4}, [](auto i, auto) { return double(i) - 1.5; }));
  sd.insert("n", formula(DType::i64, {2}, [](auto i, auto) { return double(i + 7); }));
  sd.metadata = {{"format", "pt"}};
  const std::string path = temp_path("attn_io_state_dict.safetensors");
  attn::io::save_state_dict(path, sd);
  const StateDict back = attn::io::load_state_dict(path);
  std::remove(path.c_str());
  EXPECT_EQ(back.metadata, sd.metadata);
  EXPECT_EQ(back.size(), 3u);  // file order: 8-byte elements first, then 4, then 2
  EXPECT_EQ(back.names(), (std::vector<std::string>{"n", "w", "b"}));
  EXPECT_EQ(at(back.at("w"), 2, 3), 23.0);
  EXPECT_EQ(at(back.at("b"), 3), 1.5);
  EXPECT_EQ(back.at("b").dtype(), DType::bf16);
  EXPECT_EQ(at(back.at("n"), 1), 8.0);
}

TEST(StateDict, LoadRefusesTensorsAttnCannotHold) {
  const std::vector<std::byte> two(2);
  const std::vector<attn::io::SafetensorsRecord> records{{"ok", "I8", {2}, two}, {"bad", "U16", {1}, two}};
  const std::vector<std::byte> bytes = attn::io::serialize_safetensors(records);
  const auto file = attn::io::SafetensorsFile::parse(bytes);
  EXPECT_NE(error_of([&] { (void)attn::io::load_state_dict(file); }).find("tensor \"bad\": has dtype U16"),
            std::string::npos);
}

struct Module {
  Tensor w = formula(DType::f32, {4, 3}, [](auto, auto) { return -1.0; });
  Tensor b = formula(DType::f32, {4}, [](auto, auto) { return -1.0; });
  Tensor c = formula(DType::f32, {2}, [](auto, auto) { return -1.0; });
  Tensor n = formula(DType::i32, {2}, [](auto, auto) { return -1.0; });
  std::vector<attn::io::ParamSlot> slots() const { return {{"w", w}, {"b", b}, {"c", c}, {"n", n}}; }
};

TEST(StateDict, StrictLoadReportsEveryProblemInOneError) {
  Module m;
  StateDict sd;
  sd.insert("w", formula(DType::f32, {3, 4}, [](auto, auto) { return 1.0; }));  // transposed shape
  sd.insert("extra1", Tensor(DType::f32, {1}));
  sd.insert("n", formula(DType::f32, {2}, [](auto, auto) { return 1.0; }));     // f32 into i32
  sd.insert("c", formula(DType::f64, {2}, [](auto i, auto) { return double(i); }));
  sd.insert("extra2", Tensor(DType::f32, {1}));
  const std::string msg = error_of([&] { (void)attn::io::load_into(m.slots(), sd, true); });
  EXPECT_EQ(msg,
            "state_dict: missing keys: b; unexpected keys: extra1, extra2; wrong shapes or dtypes: w expected "
            "[4, 3] f32, got [3, 4] f32, n expected [2] i32, got [2] f32, expected exactly the module's keys with "
            "their shapes and dtypes (strict load)");
  EXPECT_EQ(at(m.c, 1), -1.0) << "a failed strict load copies nothing";
}

TEST(StateDict, NonStrictLoadCopiesWhatFitsAndReturnsTheReport) {
  Module m;
  StateDict sd;
  sd.insert("w", formula(DType::bf16, {4, 3}, [](auto i, auto j) { return double(i) + 0.25 * double(j); }));
  sd.insert("c", formula(DType::f32, {3}, [](auto, auto) { return 5.0; }));
  sd.insert("n", formula(DType::i32, {2}, [](auto i, auto) { return double(i + 40); }));
  sd.insert("other", Tensor(DType::f32, {1}));
  const attn::io::LoadReport r = attn::io::load_into(m.slots(), sd, false);
  EXPECT_EQ(r.missing, (std::vector<std::string>{"b"}));
  EXPECT_EQ(r.unexpected, (std::vector<std::string>{"other"}));
  ASSERT_EQ(r.mismatched.size(), 1u);
  EXPECT_EQ(r.mismatched[0].name, "c");
  EXPECT_EQ(r.mismatched[0].expected, "[2] f32");
  EXPECT_EQ(r.mismatched[0].got, "[3] f32");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(at(m.w, 3, 2), 3.5) << "bf16 converted to the slot's f32";
  EXPECT_EQ(at(m.n, 1), 41.0);
  EXPECT_EQ(at(m.b, 0), -1.0) << "missing: untouched";
  EXPECT_EQ(at(m.c, 0), -1.0) << "mismatched: untouched";
  // All keys fitting: ok, and the strict load passes.
  StateDict good;
  for (const auto& s : m.slots()) good.insert_copy(s.name, s.dest);
  EXPECT_TRUE(attn::io::load_into(m.slots(), good, true).ok());
  EXPECT_EQ(attn::io::LoadReport{}.describe(), "all keys matched");
}

TEST(StateDict, LoadIntoAStridedSlot) {
  Tensor storage = formula(DType::f32, {3, 2}, [](auto, auto) { return 0.0; });
  const attn::TensorView transposed = storage.view().permute({1, 0});  // a [2, 3] slot, strides (1, 2)
  StateDict sd;
  sd.insert("t", formula(DType::f32, {2, 3}, [](auto i, auto j) { return double(i * 3 + j); }));
  const std::vector<attn::io::ParamSlot> slots{{"t", transposed}};
  EXPECT_TRUE(attn::io::load_into(slots, sd).ok());
  for (std::int64_t i = 0; i < 2; ++i)
    for (std::int64_t j = 0; j < 3; ++j) EXPECT_EQ(at(storage, j, i), double(i * 3 + j));
}

}  // namespace
