// Shared pieces of the `attn train` subcommands (train_util.hpp).

#include "train_util.hpp"

#include <attn/error.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace attn_cli {

std::string clock_string(double seconds) {
  const long s = std::lround(std::max(seconds, 0.0));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

void run_gnuplot(const std::string& png, const std::string& plot_commands) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    std::fprintf(stderr, "attn train: gnuplot not found, %s not written (the CSV has the curve)\n", png.c_str());
    return;
  }
  const std::string script = png + ".gp";
  FILE* f = std::fopen(script.c_str(), "w");
  ATTN_CHECK(f != nullptr, system, "--plot", "cannot write ", script);
  std::fprintf(f, "set terminal pngcairo size 900,540\nset output '%s'\nset datafile separator ','\n%s", png.c_str(),
               plot_commands.c_str());
  std::fclose(f);
  if (std::system(("gnuplot '" + script + "' 2>&1").c_str()) != 0)
    std::fprintf(stderr, "attn train: gnuplot failed writing %s\n", png.c_str());
  std::remove(script.c_str());
}

}  // namespace attn_cli
