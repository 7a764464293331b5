// cuDNN, loaded when first asked for rather than linked: the fused attention (cudnn_attention.h)
// is the only user, and a machine without cuDNN, or with a version known to be wrong, still runs
// everything else, on the tensor-core kernels. The library is looked for at DS_CUDNN_LIBRARY (a
// path) when that is set, else as libcudnn.so.9 on the loader's search path (LD_LIBRARY_PATH:
// where PyTorch's wheels keep theirs, for one), else in /usr/local/cuda/lib64.
//
// Only the handle and the graph ("backend") API are used, through the pointers below; their
// types come from the toolkit's headers, which need no library to compile against.
#pragma once

#include <cudnn_graph.h>

#include <cstddef>
#include <string>

namespace ds::tensor::cuda {

struct CudnnLibrary {
  size_t version = 0;  // cudnnGetVersion(): 9.10.2 is 91002
  std::string path;    // what was loaded

  decltype(&cudnnGetVersion) get_version = nullptr;
  decltype(&cudnnGetErrorString) error_string = nullptr;
  decltype(&cudnnGetLastErrorString) last_error_string = nullptr;
  decltype(&cudnnCreate) create = nullptr;
  decltype(&cudnnDestroy) destroy = nullptr;
  decltype(&cudnnSetStream) set_stream = nullptr;
  decltype(&cudnnBackendCreateDescriptor) create_descriptor = nullptr;
  decltype(&cudnnBackendDestroyDescriptor) destroy_descriptor = nullptr;
  decltype(&cudnnBackendSetAttribute) set_attribute = nullptr;
  decltype(&cudnnBackendGetAttribute) get_attribute = nullptr;
  decltype(&cudnnBackendFinalize) finalize = nullptr;
  decltype(&cudnnBackendExecute) execute = nullptr;

  // The process's copy, loaded on the first call (thread-safe); nullptr where there is none to
  // use, with the reason in *why (once for the process: the answer does not change).
  static const CudnnLibrary* get(std::string* why = nullptr);

  // `status`'s name and cuDNN's last message on this thread ("" where it has none).
  std::string describe(cudnnStatus_t status) const;
};

// "9.19.0" from cudnnGetVersion()'s 91900 (cuDNN 9 on), "8.9.7" from 8907 (before).
std::string cudnn_version_name(size_t version);

// Whether `version` (as cudnnGetVersion gives it) may run the fused attention: 9.0 on, except
// 9.10.0 and 9.10.1, whose bf16 attention NVIDIA's cudnn-frontend refuses as wrong.
bool cudnn_attention_version_ok(size_t version, std::string* why);

}  // namespace ds::tensor::cuda
