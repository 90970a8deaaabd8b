// DPO-family losses on one pair and their derivative (trl 0.9.6 dpo_loss, docs/reference/dpo-loss.md#other-loss-types).
// d = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected); the loss depends on the pair only through d.
#pragma once
#include "dpo/engine.h"

namespace dpo {

struct DpoLossValue {
  double loss = 0;
  double dloss_dd = 0;  // dL/dd: the policy chosen logp gets +dL/dd, the rejected logp -dL/dd
};

DpoLossValue dpo_loss(DpoLoss kind, double d, double beta, double label_smoothing);

}  // namespace dpo
