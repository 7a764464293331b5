#include "config/train_config.h"

#include "util/files.h"
#include "util/strings.h"

namespace ds::config {
namespace {

std::string resolve_path(const MapReader& m, const std::string& value) {
  return value.empty() ? value : resolve_relative(m.document().dir, value).string();
}

DataConfig read_data(MapReader& m, const ModelConfig& model) {
  DataConfig d;
  if (!m.has("train")) {
    m.fail_here("missing data.train: a text file or a glob of llm.c .bin token shards");
  }
  d.train = resolve_path(m, m.get_string("train", ""));
  d.val = resolve_path(m, m.get_string("val", ""));
  d.val_fraction = m.get_double("val_fraction", 0.05, Range::between(0, 0.5));
  d.seq_len = m.get_int("seq_len", model.block_size, Range::at_least(1));
  if (d.seq_len > model.block_size) {
    m.fail("seq_len",
           fmt::format("seq_len {} is longer than the model's block_size {}", d.seq_len,
                       model.block_size),
           "lower data.seq_len or raise model.block_size");
  }
  d.shuffle = m.get_bool("shuffle", true);
  d.format = m.get_choice("format", "auto", {"auto", "text", "bin"});
  m.finish();
  return d;
}

TrainSection read_train(MapReader& m) {
  TrainSection t;
  t.steps = m.get_int("steps", 1000, Range::at_least(1));
  t.eval_every = m.get_int("eval_every", 0, Range::at_least(0));
  t.eval_batches = m.get_int("eval_batches", 10, Range::at_least(1));
  t.seed = static_cast<uint64_t>(m.get_int("seed", 1234, Range::at_least(0)));
  const std::string device = m.get_choice("device", "auto", {"auto", "cpu", "cuda"});
  t.device = device == "cpu" ? Device::kCpu : device == "cuda" ? Device::kCuda : Device::kAuto;
  m.finish();
  return t;
}

CheckpointSection read_checkpoint(MapReader& m) {
  CheckpointSection c;
  c.dir = resolve_path(m, m.get_string("dir", ""));
  c.save_every = m.get_int("save_every", 0, Range::at_least(0));
  c.resume = m.get_string("resume", "auto");
  c.keep = m.get_int("keep", 3, Range::at_least(0));
  c.export_path = resolve_path(m, m.get_string("export", ""));
  c.save_on_signal = m.get_bool("save_on_signal", false);
  if (c.save_on_signal && c.dir.empty()) {
    m.fail("save_on_signal", "a checkpoint on SIGTERM is asked for but checkpoint.dir is not set");
  }
  if (c.save_every > 0 && c.dir.empty()) {
    m.fail("save_every", "checkpoints are asked for but checkpoint.dir is not set");
  }
  m.finish();
  return c;
}

LogSection read_log(MapReader& m) {
  LogSection l;
  l.metrics = resolve_path(m, m.get_string("metrics", ""));
  l.level = m.get_choice("level", "info", {"debug", "info", "warn", "error"});
  m.finish();
  return l;
}

DsConfig read_deepspeed(MapReader& root, TrainConfig& cfg, const RunContext& context) {
  const YAML::Node node = root.raw("deepspeed");
  if (node.IsScalar() && !node.IsNull()) {
    const std::filesystem::path path = resolve_relative(root.document().dir, node.Scalar());
    cfg.deepspeed_source = path.string();
    MapReader ds_root = root.load_referenced("deepspeed", path, "ds_config");
    return parse_ds_config(ds_root, context);
  }
  cfg.deepspeed_source = "inline";
  MapReader ds_root = root.get_map_or_empty("deepspeed");
  return parse_ds_config(ds_root, context);
}

}  // namespace

TrainConfig parse_train_config(DocumentPtr doc, int64_t world_size) {
  TrainConfig cfg;
  cfg.path = doc->name;
  MapReader root(doc, doc->root, "");
  cfg.model = parse_model(root, "model");
  MapReader data = root.get_map_or_empty("data");
  cfg.data = read_data(data, cfg.model);
  MapReader train = root.get_map_or_empty("train");
  cfg.train = read_train(train);

  RunContext context;
  context.world_size = world_size;
  context.total_steps = cfg.train.steps;
  context.model_layers = cfg.model.n_layer;
  cfg.ds = read_deepspeed(root, cfg, context);

  MapReader checkpoint = root.get_map_or_empty("checkpoint");
  cfg.checkpoint = read_checkpoint(checkpoint);
  MapReader log = root.get_map_or_empty("log");
  cfg.log = read_log(log);
  root.finish();
  return cfg;
}

TrainConfig load_train_config(const std::filesystem::path& path, int64_t world_size) {
  if (world_size < 1) {
    throw UsageError(fmt::format("world size must be at least 1, not {}", world_size));
  }
  return parse_train_config(load_document(path, "train config"), world_size);
}

}  // namespace ds::config
