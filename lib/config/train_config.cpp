#include "config/train_config.h"

#include "util/files.h"
#include "util/strings.h"

namespace ds::config {
namespace {

std::string resolve_path(const MapReader& m, const std::string& value) {
  return value.empty() ? value : resolve_relative(m.document().dir, value).string();
}

// "a {x} b" → literal "a ", field x, literal " b"; the message says what is wrong, "" if fine.
std::string parse_template(const std::string& source, TextTemplate& out) {
  out.source = source;
  out.pieces.clear();
  std::string literal;
  const auto flush = [&] {
    if (!literal.empty()) out.pieces.push_back({std::move(literal), false});
    literal.clear();
  };
  for (size_t i = 0; i < source.size(); ++i) {
    const char c = source[i];
    if ((c == '{' || c == '}') && i + 1 < source.size() && source[i + 1] == c) {
      literal += c;
      ++i;
      continue;
    }
    if (c == '}') {
      return fmt::format("unmatched '}}' at character {} (write '}}}}' for a literal brace)",
                         i + 1);
    }
    if (c != '{') {
      literal += c;
      continue;
    }
    const size_t close = source.find_first_of("{}", i + 1);
    if (close == std::string::npos || source[close] != '}') {
      return fmt::format(
          "the '{{' at character {} is not closed (write '{{{{' for a literal brace)", i + 1);
    }
    std::string name = source.substr(i + 1, close - i - 1);
    if (name.empty()) {
      return fmt::format("empty field name '{{}}' at character {}", i + 1);
    }
    flush();
    out.pieces.push_back({std::move(name), true});
    i = close;
  }
  flush();
  return "";
}

// data.template.prompt / .response: a string or a non-empty list of strings.
std::vector<TextTemplate> read_template_part(MapReader& m, std::string_view key, bool required) {
  std::vector<TextTemplate> out;
  const YAML::Node node = m.raw(key);
  if (!node || node.IsNull()) {
    if (required) m.fail_here(fmt::format("missing {}", m.key_path(key)));
    return out;
  }
  std::vector<std::string> sources;
  if (node.IsScalar()) {
    sources.push_back(node.Scalar());
  } else if (node.IsSequence() && node.size() > 0) {
    for (const YAML::Node& item : node) {
      if (!item.IsScalar()) {
        m.fail(key, fmt::format("expected a string or a list of strings, found a list holding {}",
                                describe_found(item)));
      }
      sources.push_back(item.Scalar());
    }
  } else {
    m.fail(key, fmt::format("expected a string or a non-empty list of strings, found {}",
                            describe_found(node)));
  }
  for (size_t k = 0; k < sources.size(); ++k) {
    TextTemplate t;
    const std::string problem = parse_template(sources[k], t);
    if (!problem.empty()) {
      m.fail(key, sources.size() == 1 ? problem : fmt::format("alternative {}: {}", k + 1, problem),
             "{name} inserts the record's string field 'name'; '{{' and '}}' are literal braces");
    }
    out.push_back(std::move(t));
  }
  return out;
}

DataConfig read_data(MapReader& m, const ModelConfig& model) {
  DataConfig d;
  if (!m.has("train")) {
    m.fail_here(
        "missing data.train: a text file, a JSON-lines file or a glob of llm.c .bin token "
        "shards");
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
  d.format = m.get_choice("format", "auto", {"auto", "text", "bin", "jsonl"});
  const std::string lower_train = to_lower(d.train);
  const bool jsonl =
      d.format == "jsonl" || (d.format == "auto" && ends_with(lower_train, ".jsonl"));
  const bool bin = d.format == "bin" || (d.format == "auto" && ends_with(lower_train, ".bin"));

  d.tokenizer = resolve_path(m, m.get_string("tokenizer", ""));
  if (!d.tokenizer.empty() && bin) {
    m.fail("tokenizer", "llm.c .bin shards hold token ids already; a tokenizer is not used",
           "remove data.tokenizer, or use data.format: text or jsonl");
  }
  if (d.tokenizer.empty() && !bin && !model.hf_dir.empty()) {
    const std::filesystem::path beside = std::filesystem::path(model.hf_dir) / "tokenizer.json";
    std::error_code ec;
    if (std::filesystem::is_regular_file(beside, ec)) {
      d.tokenizer = beside.string();
      d.tokenizer_from_model = true;
    }
  }

  const bool has_field = m.has("field");
  d.field = m.get_string("field", "text");
  if (auto tmpl = m.get_map("template")) {
    if (has_field) {
      m.fail("template", "data.field and data.template are given together",
             "use field for one text field per record, or template to build prompt and response");
    }
    DataTemplate t;
    t.prompt = read_template_part(*tmpl, "prompt", false);
    t.response = read_template_part(*tmpl, "response", true);
    tmpl->finish();
    d.text_template = std::move(t);
    d.field.clear();
  }
  if (!jsonl && (has_field || d.text_template)) {
    m.fail(has_field ? "field" : "template",
           fmt::format("{} applies to JSON-lines data only", has_field ? "field" : "template"),
           "set data.format: jsonl (a data.train ending in .jsonl is read as JSON lines)");
  }
  if (!jsonl) d.field.clear();
  d.mask_prompt = m.get_bool("mask_prompt", false);
  if (d.mask_prompt && !(d.text_template && !d.text_template->prompt.empty())) {
    m.fail("mask_prompt", "mask_prompt needs a prompt: data.template.prompt is not set",
           "give data.template: {prompt: ..., response: ...}");
  }
  d.packing = m.get_bool("packing", true);
  if (!d.packing && bin) {
    m.fail("packing", "llm.c .bin shards have no document boundaries, so packing must stay on");
  }
  d.cache = m.get_bool("cache", true);
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
