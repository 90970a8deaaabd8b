// The last decoder block for a caller that reads only some rows' final hidden states: the reference pass, which
// scores answer tokens only (docs/performance.md#last-layer-only-where-scored). Every row's keys and values are still
// computed (the kept rows attend to them); q, attention, o_proj, the MLP and the final norm run for the kept rows only.
#pragma once
#include <cstdint>
#include <vector>

#include "model/device_weights.h"
#include "train/lora.h"

namespace dpo {

// Each row of `rows` once, ascending: the rows whose final hidden states a pass reads, from its scored entries (the
// last shared prompt row of a packed answer pair is scored twice).
std::vector<int> rows_once(std::vector<int> rows);
// Fails (E_INTERNAL, naming `what`) unless `rows` ascend strictly within [0, limit).
void check_ascending_rows(const std::vector<int>& rows, int limit, const char* what);

// x: backend (B*T, C), the last block's input (decoder_forward's residual stream after the other blocks), read only.
// pos, key_skip: host (B*T) and (B*T, kKeySkipInts) or null, as for decoder_forward; pos_dev, valid_dev: the same on
// the backend. rows: host, ascending and distinct, each < B*T. hidden_out: backend (rows.size(), C), the final-norm
// output of those rows, the same bits as the full block's rows (every op is batch-invariant per row and each query
// attends to the same keys in the same order).
void last_block_rows(float* hidden_out, const float* x, const DeviceWeights& w, Backend& be, const LoraAdapter* lora,
                     const int* pos, const int* pos_dev, const uint8_t* valid_dev, const int* key_skip, int B, int T,
                     const std::vector<int>& rows, const RopeTable& rope);

}  // namespace dpo
