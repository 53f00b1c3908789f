#pragma once
// Conversions between Python objects and attn's C++ types, shared by the bindings: arrays (numpy,
// torch CPU tensors, anything with DLPack) become TensorViews without copies, strides honoured.

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <string>
#include <vector>

#include "attn/tensor.hpp"

namespace attn::py {

namespace nb = nanobind;

/// Keeps the imported arrays (and so the memory behind their views) alive for one call.
using Keep = std::vector<nb::ndarray<>>;

/// The array behind `obj` as a TensorView (no copy). A torch tensor that requires grad is detached
/// first (a view). Throws attn::Error naming `name` for non-arrays, other devices, rank > 4 and
/// dtypes attn does not have (bool, i8, u8 as bool, i32, i64, f16, bf16, f32, f64).
TensorView to_view(nb::handle obj, const char* name, Keep& keep);
/// The same, or an empty view for None.
TensorView to_optional_view(nb::handle obj, const char* name, Keep& keep);

/// Registers attn::Error -> TypeError for ErrorKind::dtype and ErrorKind::type, else ValueError.
void register_errors();

/// A list (or tuple) of str as UTF-8 strings; a lone str is refused rather than read as a list of
/// characters (TypeError naming texts or texts[i]).
std::vector<std::string> texts_from(nb::handle texts);

/// Registers attn._core.WordPiece, the BERT tokenizer (text_bindings.cpp).
void register_text(nb::module_& m);

/// Registers attn._core.SentenceEncoder (sentence_bindings.cpp).
void register_sentence(nb::module_& m);

}  // namespace attn::py
