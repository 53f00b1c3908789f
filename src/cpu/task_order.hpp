#pragma once
// Task order shared by the forward and backward drivers: within each (b, kv head), longest first,
// so unequal (causal) tasks balance under dynamic scheduling while consecutive tasks still share
// one head's K/V in cache. (A global longest-first order interleaved all heads and streamed K/V
// from DRAM: causal forward D=128 N=2048 ran at 0.64x the non-causal time instead of the tile
// count's 0.52x on the Zen 3 machine.) The order depends on the shape only.

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

namespace attn::cpu {

/// Tasks (with members b and kvh) reordered by (b, kvh), then by descending cost.
template <class Task>
std::vector<Task> order_tasks(const std::vector<Task>& tasks, const std::vector<std::int64_t>& cost) {
  std::vector<std::size_t> order(tasks.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
    const Task &a = tasks[x], &b = tasks[y];
    if (a.b != b.b || a.kvh != b.kvh) return a.b != b.b ? a.b < b.b : a.kvh < b.kvh;
    return cost[x] > cost[y];
  });
  std::vector<Task> sorted;
  sorted.reserve(tasks.size());
  for (std::size_t i : order) sorted.push_back(tasks[i]);
  return sorted;
}

}  // namespace attn::cpu
