#include "tensor/cuda/cudnn_library.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cstdlib>
#include <vector>

namespace ds::tensor::cuda {

namespace {

// The places to try, in order (cudnn_library.h).
std::vector<std::string> candidates() {
  if (const char* path = std::getenv("DS_CUDNN_LIBRARY"); path != nullptr && *path != '\0') {
    return {path};
  }
  return {"libcudnn.so.9", "/usr/local/cuda/lib64/libcudnn.so.9"};
}

template <typename Fn>
bool bind(void* handle, const char* name, Fn& fn, std::string* missing) {
  fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (fn == nullptr && missing->empty()) *missing = name;
  return fn != nullptr;
}

struct Loaded {
  CudnnLibrary library;
  std::string why;  // empty when the library is usable
};

Loaded load() {
  Loaded loaded;
  CudnnLibrary& l = loaded.library;
  std::string tried;
  void* handle = nullptr;
  for (const std::string& candidate : candidates()) {
    // Kept for the process: cuDNN's own sub-libraries are loaded from it.
    handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) {
      l.path = candidate;
      break;
    }
    tried += fmt::format("{}{} ({})", tried.empty() ? "" : "; ", candidate, dlerror());
  }
  if (handle == nullptr) {
    loaded.why = "no cuDNN library: " + tried;
    return loaded;
  }
  std::string missing;
  bind(handle, "cudnnGetVersion", l.get_version, &missing);
  bind(handle, "cudnnGetErrorString", l.error_string, &missing);
  bind(handle, "cudnnGetLastErrorString", l.last_error_string, &missing);
  bind(handle, "cudnnCreate", l.create, &missing);
  bind(handle, "cudnnDestroy", l.destroy, &missing);
  bind(handle, "cudnnSetStream", l.set_stream, &missing);
  bind(handle, "cudnnBackendCreateDescriptor", l.create_descriptor, &missing);
  bind(handle, "cudnnBackendDestroyDescriptor", l.destroy_descriptor, &missing);
  bind(handle, "cudnnBackendSetAttribute", l.set_attribute, &missing);
  bind(handle, "cudnnBackendGetAttribute", l.get_attribute, &missing);
  bind(handle, "cudnnBackendFinalize", l.finalize, &missing);
  bind(handle, "cudnnBackendExecute", l.execute, &missing);
  if (!missing.empty()) {
    loaded.why = fmt::format("{} lacks {} (cuDNN 9 or later is needed)", l.path, missing);
    return loaded;
  }
  l.version = l.get_version();
  std::string version_why;
  if (!cudnn_attention_version_ok(l.version, &version_why)) {
    loaded.why = fmt::format("{}: {}", l.path, version_why);
  }
  return loaded;
}

}  // namespace

std::string cudnn_version_name(size_t version) {
  if (version < 10000)
    return fmt::format("{}.{}.{}", version / 1000, version / 100 % 10, version % 100);
  return fmt::format("{}.{}.{}", version / 10000, version / 100 % 100, version % 100);
}

bool cudnn_attention_version_ok(size_t version, std::string* why) {
  const auto name = [&] { return "cuDNN " + cudnn_version_name(version); };
  if (version < 90000) {
    *why = name() + " is older than 9.0";
    return false;
  }
  if (version == 91000 || version == 91001) {
    *why = name() + " has a known bug in bf16 attention (fixed in 9.10.2)";
    return false;
  }
  return true;
}

const CudnnLibrary* CudnnLibrary::get(std::string* why) {
  static const Loaded loaded = load();
  if (why != nullptr) *why = loaded.why;
  return loaded.why.empty() ? &loaded.library : nullptr;
}

std::string CudnnLibrary::describe(cudnnStatus_t status) const {
  std::string message(1024, '\0');
  last_error_string(message.data(), message.size());
  message.resize(message.find('\0'));
  std::string text = error_string(status);
  if (!message.empty()) text += ": " + message;
  return text;
}

}  // namespace ds::tensor::cuda
