// The ds_config "optimizer" and "scheduler" sections.
#include <cmath>

#include "config/ds_config.h"
#include "util/strings.h"

namespace ds::config {
namespace {

WarmupType read_warmup_type(MapReader& p) {
  return p.get_choice("warmup_type", "log", {"log", "linear"}) == "log" ? WarmupType::kLog
                                                                        : WarmupType::kLinear;
}

// DeepSpeed's schedulers take last_batch_iteration to resume mid-schedule; here
// the checkpoint carries the schedule's position, so only the fresh-start value fits.
void read_last_batch_iteration(MapReader& p) {
  if (p.get_int("last_batch_iteration", -1) != -1) {
    p.fail("last_batch_iteration",
           "only -1 (start of the schedule) is supported; a resumed run takes its position "
           "from the checkpoint");
  }
}

WarmupLRParams read_warmup(MapReader& p, double default_max_lr) {
  WarmupLRParams w;
  w.warmup_min_lr = p.get_double("warmup_min_lr", 0, Range::at_least(0));
  w.warmup_max_lr = p.get_double("warmup_max_lr", default_max_lr, Range::at_least(0));
  w.warmup_num_steps = p.get_int("warmup_num_steps", 1000, Range::at_least(1));
  w.warmup_type = read_warmup_type(p);
  read_last_batch_iteration(p);
  return w;
}

OneCycleParams read_one_cycle(MapReader& p) {
  OneCycleParams c;
  if (!p.has("cycle_min_lr") || !p.has("cycle_max_lr")) {
    p.fail(p.has("cycle_min_lr") ? "cycle_max_lr" : "cycle_min_lr",
           "OneCycle needs both cycle_min_lr and cycle_max_lr");
  }
  c.cycle_min_lr = p.get_double("cycle_min_lr", 0, Range::at_least(0));
  c.cycle_max_lr = p.get_double("cycle_max_lr", 0, Range::at_least(0));
  c.decay_lr_rate = p.get_double("decay_lr_rate", 0, Range::at_least(0));
  c.cycle_first_step_size = p.get_int("cycle_first_step_size", 2000, Range::at_least(1));
  c.cycle_second_step_size =
      p.get_int("cycle_second_step_size", c.cycle_first_step_size, Range::at_least(1));
  c.cycle_first_stair_count = p.get_int("cycle_first_stair_count", 0, Range::at_least(0));
  c.cycle_second_stair_count =
      p.get_int("cycle_second_stair_count", c.cycle_first_stair_count, Range::at_least(0));
  c.decay_step_size = p.get_int("decay_step_size", 0, Range::at_least(0));
  c.cycle_momentum = p.get_bool("cycle_momentum", true);
  c.cycle_min_mom = p.get_double("cycle_min_mom", 0.8, Range::between(0, 1));
  c.cycle_max_mom = p.get_double("cycle_max_mom", 0.9, Range::between(0, 1));
  c.decay_mom_rate = p.get_double("decay_mom_rate", 0, Range::at_least(0));
  read_last_batch_iteration(p);
  if (c.cycle_min_lr > c.cycle_max_lr) {
    p.fail("cycle_min_lr",
           fmt::format("cycle_min_lr {} is above cycle_max_lr {}", c.cycle_min_lr, c.cycle_max_lr));
  }
  return c;
}

LRRangeTestParams read_range_test(MapReader& p) {
  LRRangeTestParams r;
  r.lr_range_test_min_lr = p.get_double("lr_range_test_min_lr", 1e-3, Range::at_least(0));
  r.lr_range_test_step_size = p.get_int("lr_range_test_step_size", 2000, Range::at_least(1));
  r.lr_range_test_step_rate = p.get_double("lr_range_test_step_rate", 1.0, Range::positive());
  r.lr_range_test_staircase = p.get_bool("lr_range_test_staircase", false);
  read_last_batch_iteration(p);
  return r;
}

// total_num_steps: required by the decaying schedules; "auto" takes train.steps.
int64_t read_total_steps(MapReader& p, const RunContext& context) {
  if (auto steps = p.get_optional_int("total_num_steps", Range::at_least(1))) return *steps;
  if (p.is_auto("total_num_steps") && context.total_steps) return *context.total_steps;
  p.fail("total_num_steps",
         p.is_auto("total_num_steps") ? "is \"auto\" but there is no train.steps to take it from"
                                      : "this schedule needs total_num_steps",
         "set it to the number of optimizer steps the schedule spans (\"auto\": train.steps)");
}

}  // namespace

OptimizerConfig parse_optimizer(MapReader& section) {
  OptimizerConfig o;
  o.given = true;
  if (!section.has("type"))
    section.fail_here("the optimizer needs a \"type\" (Adam, AdamW or SGD)");
  const std::string type = section.get_string("type", "");
  const std::string lower = to_lower(type);
  if (lower == "adam") {
    o.type = OptimizerType::kAdam;
    o.type_name = "Adam";
  } else if (lower == "adamw") {
    o.type = OptimizerType::kAdamW;
    o.type_name = "AdamW";
  } else if (lower == "sgd") {
    o.type = OptimizerType::kSgd;
    o.type_name = "SGD";
  } else {
    static const std::vector<std::string> kDeepSpeedOnly = {
        "OneBitAdam", "ZeroOneAdam", "OneBitLamb", "Lamb",    "Lion",
        "MuAdam",     "MuAdamW",     "MuSGD",      "Adagrad", "Adafactor"};
    for (const std::string& name : kDeepSpeedOnly) {
      if (to_lower(name) == lower) {
        section.fail("type",
                     fmt::format("optimizer \"{}\" is a DeepSpeed optimizer that dstrain does "
                                 "not support; supported: Adam, AdamW, SGD",
                                 type));
      }
    }
    const std::vector<std::string> names = {"Adam", "AdamW", "SGD"};
    const auto near = closest_match(type, names);
    section.fail("type", fmt::format("unknown optimizer \"{}\"; expected Adam, AdamW or SGD", type),
                 near ? fmt::format("did you mean \"{}\"?", *near) : "");
  }

  (void)section.get_bool("legacy_fusion", false);  // an apex detail with no meaning here
  auto params_opt = section.get_map("params");
  section.finish();
  if (!params_opt) return o;
  MapReader& p = *params_opt;
  o.lr = p.get_double("lr", 1e-3, Range::at_least(0));
  if (p.has("max_grad_norm")) {
    p.fail("max_grad_norm", "not an optimizer parameter in DeepSpeed",
           "use the top-level \"gradient_clipping\" instead");
  }
  o.weight_decay = p.get_double("weight_decay", 0, Range::at_least(0));
  if (o.type == OptimizerType::kSgd) {
    o.momentum = p.get_double("momentum", 0, Range::at_least(0));
    o.dampening = p.get_double("dampening", 0, Range::at_least(0));
    o.nesterov = p.get_bool("nesterov", false);
    if (o.nesterov && (o.momentum <= 0 || o.dampening != 0)) {
      p.fail("nesterov", "Nesterov momentum requires a momentum > 0 and zero dampening");
    }
  } else {
    const auto betas = p.get_doubles("betas", {0.9, 0.999}, 2, Range::between(0, 1));
    o.betas = {betas[0], betas[1]};
    if (o.betas[0] >= 1 || o.betas[1] >= 1) {
      p.fail("betas",
             fmt::format("each beta must be below 1, found [{}, {}]", o.betas[0], o.betas[1]));
    }
    o.eps = p.get_double("eps", 1e-8, Range::positive());
    o.adam_w_mode = p.get_bool("adam_w_mode", true);
    o.torch_adam = p.get_bool("torch_adam", false);
    // torch.optim.AdamW, which torch_adam selects, defaults to a weight decay of 0.01.
    if (o.torch_adam && o.type == OptimizerType::kAdamW && !p.has("weight_decay")) {
      o.weight_decay = 0.01;
    }
    if (!p.get_bool("bias_correction", true)) {
      p.fail("bias_correction", "only bias_correction: true is supported");
    }
    if (p.get_bool("amsgrad", false)) {
      p.fail("amsgrad", "'amsgrad' is a DeepSpeed option that dstrain does not support");
    }
    if (o.type == OptimizerType::kAdamW && p.has("adam_w_mode") && !o.adam_w_mode) {
      p.fail("adam_w_mode",
             "AdamW always decouples weight decay; use type \"Adam\" with "
             "adam_w_mode: false for L2-style weight decay");
    }
  }
  p.finish();
  return o;
}

SchedulerConfig parse_scheduler(MapReader& section, const OptimizerConfig& optimizer,
                                const RunContext& context) {
  if (!section.has("type")) {
    section.fail_here(
        "the scheduler needs a \"type\" (WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle or "
        "LRRangeTest)");
  }
  if (section.is_auto("type")) {
    section.fail("type", "the schedule's type cannot be \"auto\"",
                 "name one: WarmupLR, WarmupDecayLR, WarmupCosineLR, OneCycle or LRRangeTest");
  }
  const std::string type = section.get_choice(
      "type", "", {"WarmupLR", "WarmupDecayLR", "WarmupCosineLR", "OneCycle", "LRRangeTest"});
  MapReader p = section.get_map_or_empty("params");
  section.finish();
  SchedulerConfig out;
  if (type == "WarmupLR") {
    out = read_warmup(p, optimizer.lr);
  } else if (type == "WarmupDecayLR") {
    WarmupDecayLRParams d;
    d.total_num_steps = read_total_steps(p, context);
    static_cast<WarmupLRParams&>(d) = read_warmup(p, 0.001);
    out = d;
  } else if (type == "WarmupCosineLR") {
    WarmupCosineLRParams c;
    c.total_num_steps = read_total_steps(p, context);
    c.warmup_min_ratio = p.get_double("warmup_min_ratio", 0, Range::between(0, 1));
    c.warmup_num_steps = p.get_int("warmup_num_steps", 1000, Range::at_least(1));
    c.cos_min_ratio = p.get_double("cos_min_ratio", 0.0001, Range::between(0, 1));
    c.warmup_type = read_warmup_type(p);
    read_last_batch_iteration(p);
    out = c;
  } else if (type == "OneCycle") {
    out = read_one_cycle(p);
  } else {
    out = read_range_test(p);
  }
  p.finish();
  return out;
}

std::string scheduler_name(const SchedulerConfig& scheduler) {
  static const char* kNames[] = {"",         "WarmupLR",   "WarmupDecayLR", "WarmupCosineLR",
                                 "OneCycle", "LRRangeTest"};
  return kNames[scheduler.index()];
}

}  // namespace ds::config
