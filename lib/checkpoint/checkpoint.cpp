#include "checkpoint/checkpoint.h"

#include <zlib.h>

#include <algorithm>
#include <fstream>

#include "checkpoint/safetensors.h"
#include "config/config_json.h"
#include "util/files.h"
#include "util/log.h"

namespace ds::checkpoint {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

constexpr const char* kFormat = "dstrain-checkpoint";
constexpr int kVersion = 1;
constexpr const char* kMaster = "master";

// CRC-32 of a whole file, streamed.
uint32_t file_crc32(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chunk(1 << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    const std::streamsize n = in.gcount();
    if (n > 0) crc = crc32(crc, reinterpret_cast<const Bytef*>(chunk.data()), static_cast<uInt>(n));
  }
  return static_cast<uint32_t>(crc);
}

// Every rank calls the same collective: a barrier.
void barrier(zero::DpComm& comm) { (void)comm.allreduce_sum(0.0); }

std::string rank_file(int rank) { return fmt::format("rank{}.safetensors", rank); }

std::string tensor_name(const std::string& param, const std::string& state, int64_t begin) {
  return fmt::format("{}/{}/{}", param, state, begin);
}

int64_t step_of_tag(const fs::path& tag_dir) {
  std::error_code ec;
  if (!fs::exists(tag_dir / "meta.json", ec)) return -1;
  try {
    return Json::parse(read_text_file(tag_dir / "meta.json")).value("step", int64_t{-1});
  } catch (const std::exception&) {
    return -1;
  }
}

// Removes all but the newest `keep` complete tags (0: keep all); never `current`.
void prune(const fs::path& dir, int64_t keep, const std::string& current) {
  if (keep <= 0) return;
  std::vector<std::pair<int64_t, fs::path>> tags;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (!entry.is_directory() || entry.path().filename().string().starts_with(".")) continue;
    const int64_t step = step_of_tag(entry.path());
    if (step >= 0) tags.emplace_back(step, entry.path());
  }
  std::sort(tags.begin(), tags.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = static_cast<size_t>(keep); i < tags.size(); ++i) {
    if (tags[i].second.filename() == current) continue;
    std::error_code ec;
    fs::remove_all(tags[i].second, ec);
  }
}

Json parameters_json(const model::ModelLayout& layout) {
  Json out = Json::array();
  for (const auto& p : layout.params) out.push_back({{"name", p.name}, {"shape", p.shape}});
  return out;
}

std::string shape_text(const Json& shape) { return shape.dump(); }

}  // namespace

std::string tag_for_step(int64_t step) { return fmt::format("global_step{}", step); }

void save_checkpoint(const fs::path& dir, const std::string& tag, const config::TrainConfig& cfg,
                     zero::Engine& engine, const TrainProgress& progress, int64_t keep) {
  // Every rank of the run (with a pipeline, each stage writes its own layers).
  zero::DpComm& comm = engine.world_comm();
  const int rank = comm.rank(), world = comm.size();
  const fs::path tmp = dir / (".tmp." + tag);
  if (rank == 0) {
    fs::create_directories(dir);
    fs::remove_all(tmp);
    fs::create_directories(tmp);
  }
  barrier(comm);

  // This rank's runs of each parameter: master weights and optimizer state.
  const std::vector<zero::StateSegment> segments = engine.state_segments();
  if (!segments.empty()) {
    std::vector<StTensorRef> refs;
    Json runs = Json::array();
    for (const zero::StateSegment& s : segments) {
      refs.push_back({tensor_name(s.param, kMaster, s.begin), StDType::kF32, {s.length}, s.master});
      for (const auto& [name, data] : s.optimizer) {
        refs.push_back({tensor_name(s.param, name, s.begin), StDType::kF32, {s.length}, data});
      }
      runs.push_back({s.param, s.begin, s.length});
    }
    const fs::path file = tmp / rank_file(rank);
    write_safetensors(file, refs, {{"format", kFormat}, {"rank", std::to_string(rank)}});
    const Json sidecar = {{"rank", rank},
                          {"bytes", fs::file_size(file)},
                          {"crc32", file_crc32(file)},
                          {"segments", runs}};
    write_file_atomic(tmp / fmt::format("rank{}.json", rank), sidecar.dump());
  }
  barrier(comm);

  if (rank == 0) {
    Json files = Json::object();
    for (int r = 0; r < world; ++r) {
      const fs::path sidecar = tmp / fmt::format("rank{}.json", r);
      if (!fs::exists(sidecar)) continue;
      files[rank_file(r)] = Json::parse(read_text_file(sidecar));
      fs::remove(sidecar);
    }
    const auto& s = progress.scaler;
    const Json meta = {
        {"format", kFormat},
        {"version", kVersion},
        {"tag", tag},
        {"step", progress.step},
        {"applied_steps", progress.applied_steps},
        {"samples", progress.samples},
        {"seed", cfg.train.seed},
        {"loss_scaler",
         {{"scale", s.scale},
          {"cur_iter", s.cur_iter},
          {"last_overflow_iter", s.last_overflow_iter},
          {"cur_hysteresis", s.cur_hysteresis}}},
        {"layout",
         {{"world_size", world},
          {"dp_size", cfg.ds.batch.dp_size},
          {"pipeline_stages", cfg.ds.pipeline.stages},
          {"zero_stage", cfg.ds.zero.stage},
          {"dtype", cfg.ds.bf16.enabled   ? "bf16"
                    : cfg.ds.fp16.enabled ? "fp16"
                                          : "fp32"},
          {"train_batch_size", cfg.ds.batch.train_batch_size}}},
        {"model", config::to_json(cfg.model)},
        {"parameters", parameters_json(engine.layout())},
        {"optimizer",
         {{"type", cfg.ds.optimizer.type_name}, {"states", engine.optimizer_state_names()}}},
        {"files", files},
        {"config", config::to_json(cfg)}};
    write_file_atomic(tmp / "meta.json", meta.dump(1));
    sync_directory(tmp);
    // Into place: an older tag of the same name moves aside first and goes last.
    const fs::path target = dir / tag, old = dir / (".old." + tag);
    fs::remove_all(old);
    if (fs::exists(target)) fs::rename(target, old);
    fs::rename(tmp, target);
    sync_directory(dir);
    write_file_atomic(dir / "latest", tag + "\n");
    fs::remove_all(old);
    prune(dir, keep, tag);
  }
  barrier(comm);
}

std::optional<std::string> resume_tag(const fs::path& dir, const std::string& resume) {
  if (resume == "never" || dir.empty()) return std::nullopt;
  std::error_code ec;
  if (resume == "auto") {
    if (!fs::exists(dir / "latest", ec)) return std::nullopt;
    std::string tag = read_text_file(dir / "latest", "checkpoint pointer");
    tag.erase(tag.find_last_not_of(" \n\r\t") + 1);
    if (tag.empty() || !fs::is_directory(dir / tag, ec)) {
      throw UsageError(fmt::format("{} names tag '{}', which is not in {}",
                                   (dir / "latest").string(), tag, dir.string()),
                       "remove the latest file to start afresh, or set checkpoint.resume to a "
                       "tag that exists");
    }
    return tag;
  }
  if (!fs::is_directory(dir / resume, ec)) {
    throw UsageError(
        fmt::format("checkpoint.resume names tag '{}', which is not in {}", resume, dir.string()),
        "use auto, never, or one of the tags `dsckpt inspect` lists");
  }
  return resume;
}

Json read_meta(const fs::path& dir, const std::string& tag) {
  const fs::path path = dir / tag / "meta.json";
  Json meta;
  try {
    meta = Json::parse(read_text_file(path, "checkpoint metadata"));
  } catch (const Json::exception& e) {
    throw UsageError(fmt::format("{} is not valid JSON: {}", path.string(), e.what()),
                     "the checkpoint is damaged; resume from another tag");
  }
  if (meta.value("format", "") != kFormat || meta.value("version", 0) != kVersion) {
    throw UsageError(fmt::format("{} is not a dstrain checkpoint (format {}, version {})",
                                 path.string(), meta.value("format", "?"),
                                 meta.value("version", 0)));
  }
  return meta;
}

std::vector<std::string> verify_checkpoint(const fs::path& dir, const std::string& tag) {
  const Json meta = read_meta(dir, tag);
  std::vector<std::string> problems;
  for (const auto& [name, info] : meta.at("files").items()) {
    const fs::path file = dir / tag / name;
    std::error_code ec;
    if (!fs::exists(file, ec)) {
      problems.push_back(fmt::format("{}: missing", file.string()));
      continue;
    }
    const auto bytes = fs::file_size(file, ec);
    if (bytes != info.at("bytes").get<uint64_t>()) {
      problems.push_back(fmt::format("{}: {} bytes, meta.json says {} (truncated or replaced)",
                                     file.string(), bytes, info.at("bytes").get<uint64_t>()));
      continue;
    }
    if (file_crc32(file) != info.at("crc32").get<uint32_t>()) {
      problems.push_back(fmt::format("{}: CRC-32 mismatch (the file is corrupted)", file.string()));
    }
  }
  return problems;
}

LoadedCheckpoint load_checkpoint(const fs::path& dir, const std::string& tag,
                                 const model::ModelLayout& layout,
                                 const std::vector<std::string>& optimizer_states) {
  LoadedCheckpoint out;
  out.tag = tag;
  out.meta = read_meta(dir, tag);
  const Json& meta = out.meta;
  const std::string where = (dir / tag).string();
  if (const auto problems = verify_checkpoint(dir, tag); !problems.empty()) {
    std::string text;
    for (const auto& p : problems) text += (text.empty() ? "" : "; ") + p;
    throw UsageError(fmt::format("checkpoint {} is damaged: {}", where, text),
                     "resume from an older tag (checkpoint.resume: <tag>) or start afresh");
  }

  // The model must be the one that was saved: same parameters, same shapes.
  std::map<std::string, Json> saved;
  for (const Json& p : meta.at("parameters")) saved[p.at("name")] = p.at("shape");
  for (const auto& p : layout.params) {
    const auto it = saved.find(p.name);
    if (it == saved.end()) {
      throw UsageError(fmt::format("checkpoint {} has no parameter {}: it was saved for another "
                                   "model",
                                   where, p.name),
                       "the model: section must match the run that saved the checkpoint");
    }
    if (it->second.get<std::vector<int64_t>>() != p.shape) {
      throw UsageError(fmt::format("checkpoint {}: {} has shape {} there, {} in this model", where,
                                   p.name, shape_text(it->second), Json(p.shape).dump()),
                       "the model: section must match the run that saved the checkpoint");
    }
    saved.erase(it);
  }
  if (!saved.empty()) {
    throw UsageError(fmt::format("checkpoint {} has parameter {}, which this model lacks", where,
                                 saved.begin()->first),
                     "the model: section must match the run that saved the checkpoint");
  }
  const auto saved_states = meta.at("optimizer").at("states").get<std::vector<std::string>>();
  for (const std::string& s : optimizer_states) {
    if (std::find(saved_states.begin(), saved_states.end(), s) == saved_states.end()) {
      throw UsageError(
          fmt::format("checkpoint {} was saved with optimizer {} (state {}), which "
                      "has no '{}'",
                      where, meta.at("optimizer").value("type", "?"), Json(saved_states).dump(), s),
          "resume with the optimizer the checkpoint was saved with");
    }
  }

  // Assemble every parameter from the runs in all files, checking full coverage.
  std::vector<std::string> states = {kMaster};
  states.insert(states.end(), optimizer_states.begin(), optimizer_states.end());
  std::map<std::string, int64_t> covered;
  for (const auto& p : layout.params) {
    for (const std::string& s : states)
      out.state[p.name][s].assign(static_cast<size_t>(p.numel), 0);
    covered[p.name] = 0;
  }
  for (const auto& [name, info] : meta.at("files").items()) {
    const SafetensorsFile file = SafetensorsFile::load(dir / tag / name);
    for (const Json& run : info.at("segments")) {
      const std::string param = run.at(0);
      const int64_t begin = run.at(1), length = run.at(2);
      const auto& spec = layout.param(param);
      if (begin < 0 || length <= 0 || begin + length > spec.numel) {
        throw UsageError(fmt::format("{}: run {} [{}, +{}) lies outside the parameter", name, param,
                                     begin, length));
      }
      for (const std::string& s : states) {
        const std::vector<float> values = file.f32(tensor_name(param, s, begin));
        if (static_cast<int64_t>(values.size()) != length) {
          throw UsageError(fmt::format("{}/{}: tensor {} has {} values, expected {}", where, name,
                                       tensor_name(param, s, begin), values.size(), length));
        }
        std::copy(values.begin(), values.end(), out.state[param][s].begin() + begin);
      }
      covered[param] += length;
    }
  }
  for (const auto& p : layout.params) {
    if (covered[p.name] != p.numel) {
      throw UsageError(fmt::format("checkpoint {} holds {} of the {} elements of {}", where,
                                   covered[p.name], p.numel, p.name),
                       "a rank's file is missing from the checkpoint");
    }
  }

  out.progress.step = meta.at("step");
  out.progress.applied_steps = meta.at("applied_steps");
  out.progress.samples = meta.at("samples");
  const Json& s = meta.at("loss_scaler");
  out.progress.scaler.scale = s.at("scale");
  out.progress.scaler.cur_iter = s.at("cur_iter");
  out.progress.scaler.last_overflow_iter = s.at("last_overflow_iter");
  out.progress.scaler.cur_hysteresis = s.at("cur_hysteresis");
  return out;
}

config::ModelConfig model_of(const Json& meta) { return config::model_from_json(meta.at("model")); }

std::vector<float> consolidated_weights(const fs::path& dir, const std::string& tag,
                                        const model::ModelLayout& layout) {
  const LoadedCheckpoint loaded = load_checkpoint(dir, tag, layout, {});
  std::vector<float> flat(static_cast<size_t>(layout.total), 0.0f);
  for (const auto& p : layout.params) {
    const auto& values = loaded.state.at(p.name).at(kMaster);
    std::copy(values.begin(), values.end(), flat.begin() + p.offset);
  }
  return flat;
}

}  // namespace ds::checkpoint
