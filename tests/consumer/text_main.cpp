// Consumer of the installed attn::text (the WordPiece tokenizer, with its ICU dependency): encodes
// one sentence with a vocab given in memory. Exit code 0 = the package works.

#include <attn/text/wordpiece.hpp>

#include <cstdio>
#include <vector>

int main() {
  const attn::text::WordPiece wp({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "cafe", "##s", ","}, "consumer vocab");
  const std::vector<std::int32_t> ids = wp.encode("CAFÉS, café", 16);
  const std::vector<std::int32_t> want = {2, 4, 5, 6, 4, 3};
  std::printf("attn::text consumer: %zu ids\n", ids.size());
  return ids == want ? 0 : 1;
}
