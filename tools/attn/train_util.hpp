#pragma once
// Shared pieces of the `attn train` subcommands (train.cpp, train_lm.cpp): the ETA clock and the
// gnuplot run that turns a loss CSV into a PNG.

#include <string>

namespace attn_cli {

/// "m:ss" of a duration in seconds.
std::string clock_string(double seconds);
/// Writes `png` by running gnuplot on `plot_commands` (the lines after the terminal/output/CSV
/// settings); says so on stderr and writes nothing when gnuplot is not installed.
void run_gnuplot(const std::string& png, const std::string& plot_commands);

}  // namespace attn_cli
