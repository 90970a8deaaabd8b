// The RoPE frequency table a model's config calls for, computed on the host in fp32 with the operation order of
// transformers 5 (modeling_rope_utils.py): plain (1/theta^(2j/HD)), linear (/factor), dynamic NTK (theta grown with
// the call's length past max_position_embeddings), yarn (ramp between interpolated and extrapolated frequencies, plus
// the attention factor on cos/sin) and llama3 (low frequencies / factor, a smooth blend in the middle band).
// docs/model-families.md has the formulas; native/tests check them against an independent double implementation.
#pragma once
#include "dpo/backend.h"
#include "dpo/model_config.h"

namespace dpo {

// The table for a call whose positions reach seq_len - 1 (only dynamic scaling depends on seq_len, as transformers'
// dynamic_rope_update uses max(position_ids) + 1).
RopeTable rope_table(const ModelConfig& c, int seq_len);

// Plain RoPE over head_dim HD with base theta (what every scaled table starts from; ops tests use it directly).
RopeTable default_rope_table(int HD, float theta);

// True when the table changes with the call's length (dynamic scaling): recorded decode steps must not reuse it.
inline bool rope_depends_on_length(const ModelConfig& c) { return c.rope.type == RopeType::Dynamic; }

}  // namespace dpo
