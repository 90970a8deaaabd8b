// The losses of trl 0.9.6 dpo_loss (docs/reference/dpo-loss.md#other-loss-types), computed in double, with their
// derivative in d.
//   sigmoid: -logσ(βd)(1-ls) - logσ(-βd)ls          robust: (-logσ(βd)(1-ls) + logσ(-βd)ls) / (1-2ls)
//   hinge:   relu(1 - βd)                             ipo:    (d - 1/(2β))²   (d from length-averaged logps)
#include "train/dpo_loss.h"

#include <cmath>

namespace dpo {

namespace {
// log σ(z) and σ(z), stable for large |z|.
double log_sigmoid(double z) { return z >= 0 ? -std::log1p(std::exp(-z)) : z - std::log1p(std::exp(z)); }
double sigmoid(double z) { return z >= 0 ? 1.0 / (1.0 + std::exp(-z)) : std::exp(z) / (1.0 + std::exp(z)); }
}  // namespace

DpoLossValue dpo_loss(DpoLoss kind, double d, double beta, double ls) {
  DpoLossValue v;
  const double z = beta * d;
  switch (kind) {
    case DpoLoss::Sigmoid:
      v.loss = -log_sigmoid(z) * (1 - ls) - log_sigmoid(-z) * ls;
      // d/dz -logσ(z) = -σ(-z); d/dz -logσ(-z) = σ(z)
      v.dloss_dd = beta * (-(1 - ls) * sigmoid(-z) + ls * sigmoid(z));
      break;
    case DpoLoss::Robust:
      v.loss = (-log_sigmoid(z) * (1 - ls) + log_sigmoid(-z) * ls) / (1 - 2 * ls);
      v.dloss_dd = beta * (-(1 - ls) * sigmoid(-z) - ls * sigmoid(z)) / (1 - 2 * ls);
      break;
    case DpoLoss::Hinge:
      v.loss = 1 - z > 0 ? 1 - z : 0;
      v.dloss_dd = 1 - z > 0 ? -beta : 0;
      break;
    case DpoLoss::Ipo: {
      const double e = d - 1.0 / (2.0 * beta);
      v.loss = e * e;
      v.dloss_dd = 2 * e;
      break;
    }
  }
  return v;
}

}  // namespace dpo
