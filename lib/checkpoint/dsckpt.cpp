#include "checkpoint/dsckpt.h"

#include <ostream>

#include "checkpoint/checkpoint.h"
#include "checkpoint/hf_model.h"
#include "checkpoint/weights_file.h"
#include "util/error.h"

namespace ds::checkpoint {
namespace fs = std::filesystem;

namespace {

std::string latest_or(const fs::path& dir, const std::string& tag) {
  if (!tag.empty()) return tag;
  const auto latest = resume_tag(dir, "auto");
  if (!latest) {
    throw UsageError(fmt::format("{} has no checkpoint (no 'latest' file)", dir.string()),
                     "name a tag with --tag, or check the folder");
  }
  return *latest;
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, ++u;
  return fmt::format("{:.1f} {}", bytes, units[u]);
}

}  // namespace

void inspect_command(const fs::path& dir, std::ostream& out) {
  if (!fs::is_directory(dir)) {
    throw UsageError(fmt::format("{} is not a folder", dir.string()));
  }
  const auto latest = resume_tag(dir, "auto");
  out << fmt::format("{}: latest = {}\n", dir.string(), latest ? *latest : "(none)");
  std::vector<std::pair<int64_t, std::string>> tags;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && !name.starts_with(".") && fs::exists(entry.path() / "meta.json")) {
      tags.emplace_back(read_meta(dir, name).value("step", int64_t{0}), name);
    }
  }
  std::sort(tags.begin(), tags.end());
  for (const auto& [step, tag] : tags) {
    const auto meta = read_meta(dir, tag);
    const auto& layout = meta.at("layout");
    uint64_t bytes = 0;
    for (const auto& [file, info] : meta.at("files").items())
      bytes += info.at("bytes").get<uint64_t>();
    const auto& model = meta.at("model");
    out << fmt::format(
        "  {:<20} step {:>8}  {} ranks (dp {}, pipeline {}), ZeRO {}, {}, {} files, {}  model "
        "{} layers x {} ({} parameters), optimizer {}\n",
        tag, step, layout.value("world_size", 0), layout.value("dp_size", 0),
        layout.value("pipeline_stages", 1), layout.value("zero_stage", 0),
        layout.value("dtype", "?"), meta.at("files").size(), human_bytes(double(bytes)),
        model.value("n_layer", 0), model.value("n_embd", 0), model.value("parameters", 0),
        meta.at("optimizer").value("type", "?"));
  }
  if (latest) {
    out << "config of " << *latest << ":\n" << read_meta(dir, *latest).at("config").dump(2) << "\n";
  }
}

int verify_command(const fs::path& dir, const std::string& tag_in, std::ostream& out) {
  const std::string tag = latest_or(dir, tag_in);
  const auto problems = verify_checkpoint(dir, tag);
  const auto meta = read_meta(dir, tag);
  if (problems.empty()) {
    // The files are intact; check that together they hold every parameter.
    const config::ModelConfig model = model_of(meta);
    (void)consolidated_weights(dir, tag, model::build_layout(model));
    out << fmt::format("{}/{}: OK ({} files, every checksum and parameter present)\n", dir.string(),
                       tag, meta.at("files").size());
    return 0;
  }
  for (const auto& p : problems) out << p << "\n";
  out << fmt::format("{}/{}: {} problem{}\n", dir.string(), tag, problems.size(),
                     problems.size() == 1 ? "" : "s");
  return static_cast<int>(ExitCode::kUsage);
}

void export_command(const fs::path& dir, const std::string& tag_in, const fs::path& out,
                    const std::string& dtype, const std::string& format, int64_t shard_bytes,
                    std::ostream& out_text) {
  if (dtype != "f32" && dtype != "bf16") {
    throw UsageError(fmt::format("--dtype must be f32 or bf16, not {}", dtype));
  }
  if (format != "safetensors" && format != "hf") {
    throw UsageError(fmt::format("--format must be safetensors or hf, not {}", format));
  }
  const std::string tag = latest_or(dir, tag_in);
  const config::ModelConfig model = model_of(read_meta(dir, tag));
  const model::ModelLayout layout = model::build_layout(model);
  const std::vector<float> weights = consolidated_weights(dir, tag, layout);
  if (format == "hf") {
    save_hf_model(out, model, layout, weights.data(), dtype == "bf16", shard_bytes);
  } else {
    save_weights(out, layout, weights.data(), dtype == "bf16");
  }
  out_text << fmt::format("wrote {} ({} parameters, {}, Hugging Face {} names{}) from {}/{}\n",
                          out.string(), layout.parameter_count(), dtype,
                          model.llama() ? "Llama" : "GPT-2",
                          format == "hf" ? ", with config.json" : "", dir.string(), tag);
}

}  // namespace ds::checkpoint
