// Adam/AdamW/SGD against torch.optim (Debian python3-torch 1.13): the expected values
// were printed by this script with /usr/bin/python3 and pasted below.
//
//   p0 = [0.5, -1.25, 2.0, -0.031, 0.0035, 7.0]; grads and lrs as in kGrads / kLrs
//   p = torch.nn.Parameter(torch.tensor(p0)); opt = <case>([p])
//   for g, lr in zip(grads, lrs):
//       opt.param_groups[0]['lr'] = lr; p.grad = torch.tensor(g); opt.step()
//       print(p)   # and opt.state[p][...] after the last step
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "optim/optimizer.h"
#include "tensor/cpu/cast.h"
#include "tensor/cpu/kernels.h"
#include "util/error.h"

using ds::optim::Adam;
using ds::optim::AdamOptions;
using ds::optim::Sgd;
using ds::optim::SgdOptions;

namespace {

using Row = std::vector<float>;

const Row kP0 = {0.5f, -1.25f, 2.0f, -0.031f, 0.0035f, 7.0f};
const std::vector<Row> kGrads = {
    {0.1f, -0.2f, 0.3f, 0.05f, -1.5f, 0.0f},
    {0.12f, 0.2f, -0.25f, 0.04f, -1.0f, 1e-4f},
    {-0.3f, 0.1f, 0.2f, -0.06f, 0.5f, -2e-3f},
};
const std::vector<double> kLrs = {0.01, 0.02, 0.005};

// Relative 1e-6, with a floor for values near zero.
void check_close(const Row& actual, const Row& expected) {
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    INFO("element " << i);
    CHECK(actual[i] == Approx(expected[i]).epsilon(1e-6).margin(1e-9));
  }
}

void replay(ds::optim::Optimizer& opt, const std::vector<Row>& expected) {
  Row p = kP0;
  for (size_t s = 0; s < kGrads.size(); ++s) {
    INFO("step " << s + 1);
    opt.step(p.data(), kGrads[s].data(), static_cast<int64_t>(p.size()), kLrs[s],
             static_cast<int64_t>(s) + 1);
    check_close(p, expected[s]);
  }
}

Row to_row(std::span<const float> s) { return Row(s.begin(), s.end()); }

}  // namespace

TEST_CASE("AdamW matches torch.optim.AdamW", "[optim]") {
  // torch.optim.AdamW(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
  Adam adam(6, AdamOptions{0.9, 0.999, 1e-8, 0.1, true});
  replay(adam,
         {
             {0.489500016f, -1.23874998f, 1.98800004f, -0.0409689955f, 0.0134965014f, 6.99300003f},
             {0.46850878f, -1.23732507f, 1.98326159f, -0.0606495701f, 0.0328765549f, 6.96413374f},
             {0.46932289f, -1.23796356f, 1.9806819f, -0.0612200946f, 0.0356195755f, 6.96369791f},
         });
  check_close(to_row(adam.exp_avg()), {-0.0111000016f, 0.0117999995f, 0.0218000002f, 0.00165000011f,
                                       -0.161500007f, -0.000191000014f});
  check_close(to_row(adam.exp_avg_sq()), {0.000114365619f, 8.98800499e-05f, 0.000192257605f,
                                          7.69340295e-06f, 0.00349450228f, 4.00999056e-09f});
  auto state = adam.state();
  REQUIRE(state.size() == 2);
  CHECK(state[0].name == "exp_avg");
  CHECK(state[1].name == "exp_avg_sq");
}

TEST_CASE("Adam with adam_w_mode false is L2 Adam (torch.optim.Adam)", "[optim]") {
  // torch.optim.Adam(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
  Adam adam(6, AdamOptions{0.9, 0.999, 1e-8, 0.1, false});
  replay(adam,
         {
             {0.49000001f, -1.24000001f, 1.99000001f, -0.0409999974f, 0.0134999994f, 6.98999977f},
             {0.469973415f, -1.23034167f, 1.9781791f, -0.0606884658f, 0.0329044908f, 6.97000027f},
             {0.469779402f, -1.22825956f, 1.97440505f, -0.0608409867f, 0.0356559418f, 6.96500158f},
         });
}

TEST_CASE("AdamW with other betas and eps, no decay", "[optim]") {
  // torch.optim.AdamW(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0)
  Adam adam(6, AdamOptions{0.8, 0.99, 1e-6, 0.0, true});
  replay(adam,
         {
             {0.490000099f, -1.24000001f, 1.99000001f, -0.0409998f, 0.0134999957f, 7.0f},
             {0.469890326f, -1.24222219f, 1.99040258f, -0.0606424771f, 0.0326943398f, 6.9845438f},
             {0.471354276f, -1.24378645f, 1.98884737f, -0.0608041473f, 0.0350916646f, 6.98792696f},
         });
}

TEST_CASE("SGD with momentum and dampening matches torch.optim.SGD", "[optim]") {
  // torch.optim.SGD(lr=0.01, momentum=0.9, dampening=0.1, weight_decay=0.01)
  Sgd sgd(6, SgdOptions{0.9, 0.1, false, 0.01});
  replay(sgd,
         {
             {0.498950005f, -1.24787498f, 1.99679995f, -0.0314969011f, 0.0184996501f, 6.9993f},
             {0.494810194f, -1.24742532f, 1.99518049f, -0.0331056528f, 0.0634956881f, 6.99677849f},
             {0.495206475f, -1.24771798f, 1.99382639f, -0.0331961326f, 0.071366936f, 6.9959054f},
         });
  check_close(to_row(sgd.momentum_buffer()), {-0.0792552158f, 0.0585403815f, 0.270830721f,
                                              0.0180958286f, -1.5742501f, 0.174646333f});
}

TEST_CASE("SGD with Nesterov momentum matches torch.optim.SGD", "[optim]") {
  // torch.optim.SGD(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.01)
  Sgd sgd(6, SgdOptions{0.9, 0.0, true, 0.01});
  replay(sgd,
         {
             {0.498005003f, -1.2459625f, 1.99391997f, -0.031944111f, 0.0319993347f, 6.9986701f},
             {0.491554767f, -1.24964654f, 1.99747825f, -0.03425695f, 0.0942866057f, 6.99487257f},
             {0.493469179f, -1.25046277f, 1.99515378f, -0.0340255201f, 0.0990437269f, 6.99368811f},
         });
}

TEST_CASE("plain SGD has no state", "[optim]") {
  // torch.optim.SGD(lr=0.01)
  Sgd sgd(6, SgdOptions{});
  replay(sgd,
         {
             {0.499000013f, -1.24800003f, 1.99699998f, -0.0315000005f, 0.0185000002f, 7.0f},
             {0.496600002f, -1.25199997f, 2.00200009f, -0.0322999991f, 0.0384999998f, 6.99999809f},
             {0.498100013f, -1.25249994f, 2.00100017f, -0.0319999978f, 0.0359999985f, 7.00000811f},
         });
  CHECK(sgd.state().empty());
  CHECK(sgd.state_bytes_per_element() == 0);
}

TEST_CASE("stepping sub-ranges equals stepping the whole range", "[optim]") {
  Adam whole(6, AdamOptions{0.9, 0.999, 1e-8, 0.1, true});
  Adam parts(6, AdamOptions{0.9, 0.999, 1e-8, 0.1, true});
  Row a = kP0, b = kP0;
  for (size_t s = 0; s < kGrads.size(); ++s) {
    const auto step = static_cast<int64_t>(s) + 1;
    whole.step(a.data(), kGrads[s].data(), 6, kLrs[s], step);
    parts.step(b.data(), kGrads[s].data(), 2, kLrs[s], step, 0);
    parts.step(b.data() + 2, kGrads[s].data() + 2, 4, kLrs[s], step, 2);
  }
  CHECK(a == b);
  CHECK(to_row(whole.exp_avg_sq()) == to_row(parts.exp_avg_sq()));
}

// Mixed precision's step reads the stored 16-bit gradient, unscaled as it is read, and writes the
// 16-bit parameters in its one pass: bit for bit the separate passes it replaces (the gradient
// converted to fp32 with its scale, the step, the parameters rounded from the updated fp32).
TEST_CASE("a step on a 16-bit gradient with a 16-bit parameter copy equals the separate passes",
          "[optim]") {
  namespace tensor = ds::tensor;
  const tensor::DType dtype = GENERATE(tensor::DType::kBF16, tensor::DType::kF16);
  const bool adam = GENERATE(true, false);

  SgdOptions sgd_options;
  sgd_options.momentum = 0.9;
  sgd_options.weight_decay = 0.01;
  // Adam in L2 mode and SGD with decay add to the gradient as they read it.
  const bool decoupled = GENERATE(true, false);
  sgd_options.nesterov = !decoupled;
  INFO(tensor::dtype_name(dtype) << (adam ? " Adam" : " SGD") << " decoupled " << decoupled);
  const auto make = [&]() -> std::unique_ptr<ds::optim::Optimizer> {
    if (adam) return std::make_unique<Adam>(6, AdamOptions{0.9, 0.999, 1e-8, 0.1, decoupled});
    return std::make_unique<Sgd>(6, sgd_options);
  };
  const auto fused = make(), separate = make();
  Row a = kP0, b = kP0;
  std::vector<uint16_t> a16(6), b16(6), g16(6);
  const float scale = 0.5f;
  for (size_t s = 0; s < kGrads.size(); ++s) {
    const auto step = static_cast<int64_t>(s) + 1;
    tensor::cpu::from_f32(g16.data(), dtype, kGrads[s].data(), 6);
    fused->step(a.data(), tensor::StepIo{g16.data(), dtype, scale, a16.data(), dtype}, 6, kLrs[s],
                step);
    Row g32(6);
    tensor::cpu::convert_scaled(g32.data(), tensor::DType::kF32, g16.data(), dtype, 6, scale);
    separate->step(b.data(), g32.data(), 6, kLrs[s], step);
    tensor::cpu::from_f32(b16.data(), dtype, b.data(), 6);
  }
  CHECK(a == b);
  CHECK(a16 == b16);
  CHECK(fused->state().size() == separate->state().size());
  for (size_t i = 0; i < fused->state().size(); ++i) {
    CHECK(to_row(fused->state()[i].data) == to_row(separate->state()[i].data));
  }
  // And the gradient norm's sum of squares from the stored gradient.
  Row widened(6);
  tensor::cpu::to_f32(widened.data(), g16.data(), dtype, 6);
  CHECK(tensor::cpu::sum_of_squares(g16.data(), dtype, 6) ==
        tensor::cpu::sum_of_squares(widened.data(), 6));
}

TEST_CASE("restoring saved state resumes exactly", "[optim]") {
  Adam first(6, AdamOptions{});
  Row p = kP0;
  first.step(p.data(), kGrads[0].data(), 6, kLrs[0], 1);
  const Row m = to_row(first.exp_avg()), v = to_row(first.exp_avg_sq());
  Row resumed_p = p;
  first.step(p.data(), kGrads[1].data(), 6, kLrs[1], 2);

  Adam second(6, AdamOptions{});
  for (auto& s : second.state()) {
    const Row& src = s.name == "exp_avg" ? m : v;
    std::copy(src.begin(), src.end(), s.data.begin());
  }
  second.step(resumed_p.data(), kGrads[1].data(), 6, kLrs[1], 2);
  CHECK(resumed_p == p);
}

TEST_CASE("make_optimizer follows the ds_config", "[optim]") {
  ds::config::OptimizerConfig c;
  c.type = ds::config::OptimizerType::kAdam;
  c.adam_w_mode = false;
  c.weight_decay = 0.1;
  auto opt = ds::optim::make_optimizer(c, 6);
  auto* adam = dynamic_cast<Adam*>(opt.get());
  REQUIRE(adam != nullptr);
  CHECK_FALSE(adam->options().decoupled_weight_decay);
  c.adam_w_mode = true;
  CHECK(ds::optim::adam_options(c).decoupled_weight_decay);
  c.type = ds::config::OptimizerType::kSgd;
  c.momentum = 0.9;
  auto sgd = ds::optim::make_optimizer(c, 6);
  CHECK(dynamic_cast<Sgd*>(sgd.get()) != nullptr);
  CHECK(sgd->state_bytes_per_element() == 4);
}

TEST_CASE("a step outside the state range is an error", "[optim]") {
  Adam adam(4, AdamOptions{});
  Row p(6, 0.0f), g(6, 0.0f);
  CHECK_THROWS_AS(adam.step(p.data(), g.data(), 6, 0.01, 1), ds::Error);
  CHECK_THROWS_AS(adam.step(p.data(), g.data(), 2, 0.01, 1, 3), ds::Error);
  CHECK_THROWS_AS(adam.step(p.data(), g.data(), 2, 0.01, 0), ds::Error);
}
