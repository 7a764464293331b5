// Training checkpoints (DESIGN.md "Checkpoints"):
//
//   <dir>/latest                   the newest complete tag, replaced atomically
//   <dir>/<tag>/meta.json          step, layout, model, config, loss scaler, every file's
//                                  size and CRC-32, and which parameter elements it holds
//   <dir>/<tag>/rank<R>.safetensors  rank R's elements of each parameter: tensors named
//                                  "<param>/<state>/<first element>" for the states
//                                  "master" (fp32 weights) and the optimizer's arrays
//
// Because a file holds runs of named parameters, not a rank's flat memory, a checkpoint
// loads on any data-parallel size or ZeRO stage. Ranks write into a temporary folder;
// rank 0 renames it into place only after every rank finished and then points `latest`
// at it, so a crash never leaves `latest` on an incomplete tag nor loses the previous one.
// All ranks must see the same folder (a shared file system), as with DeepSpeed.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "config/train_config.h"
#include "model/model_layout.h"
#include "optim/loss_scaler.h"
#include "zero/engine.h"

namespace ds::checkpoint {

// Where a run stands: what a resumed run continues from.
struct TrainProgress {
  int64_t step = 0;           // completed optimizer-loop steps (the data position)
  int64_t applied_steps = 0;  // steps the optimizer applied (fp16 skips excluded)
  int64_t samples = 0;        // samples consumed: step * train_batch_size
  optim::LossScalerState scaler;
};

std::string tag_for_step(int64_t step);  // "global_step1000", DeepSpeed's naming

// Saves this rank's state; a collective over `comm` (every rank must call it).
void save_checkpoint(const std::filesystem::path& dir, const std::string& tag,
                     const config::TrainConfig& cfg, zero::Engine& engine,
                     const TrainProgress& progress, int64_t keep);

// The tag `resume` (auto | never | a tag) selects in `dir`, or nullopt for a fresh start.
// A named tag that does not exist, or a `latest` naming a missing tag, is a UsageError.
std::optional<std::string> resume_tag(const std::filesystem::path& dir, const std::string& resume);

struct LoadedCheckpoint {
  std::string tag;
  nlohmann::json meta;
  TrainProgress progress;
  zero::FullState state;
};

// Checks every file (presence, size, CRC-32) and every parameter (names and shapes
// against `layout`, full coverage), then assembles each parameter's complete state.
// Throws UsageError naming the file and the problem.
LoadedCheckpoint load_checkpoint(const std::filesystem::path& dir, const std::string& tag,
                                 const model::ModelLayout& layout,
                                 const std::vector<std::string>& optimizer_states);

// meta.json of a tag, read and checked for format; the file checks of load_checkpoint
// without loading: returns one line per problem (empty when the tag is intact).
nlohmann::json read_meta(const std::filesystem::path& dir, const std::string& tag);
std::vector<std::string> verify_checkpoint(const std::filesystem::path& dir,
                                           const std::string& tag);

// The consolidated fp32 weights of a tag (its "master" state), in `layout` order.
std::vector<float> consolidated_weights(const std::filesystem::path& dir, const std::string& tag,
                                        const model::ModelLayout& layout);

// The model a checkpoint was saved for, from its meta.json.
config::ModelConfig model_of(const nlohmann::json& meta);

}  // namespace ds::checkpoint
