// The hyper-parameters of the optimizer updates, shared by the optimizers (optim/optimizer.h)
// and the update kernels every Ops implements (tensor/ops.h).
#pragma once

namespace ds::tensor {

struct AdamOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0;
  // true: decoupled decay p -= lr*wd*p (AdamW, and DeepSpeed's "Adam" by default);
  // false: L2, g += wd*p before the moments (type "Adam" with adam_w_mode: false).
  bool decoupled_weight_decay = true;
};

struct SgdOptions {
  double momentum = 0;
  double dampening = 0;
  bool nesterov = false;
  double weight_decay = 0;
};

}  // namespace ds::tensor
