// cuDNN's graph ("backend") API in a few C++ pieces, over the library cudnn_library.h loads: an
// owned descriptor, a graph builder that names its tensors by unique id and adds matmul,
// pointwise and reduction nodes, and an execution plan built from the first engine configuration
// cuDNN's heuristics offer that finalises. cuDNN matches a graph of such nodes against its fused
// engines (the fused attention's, cudnn_attention.h), so the builder spells every node out as
// NVIDIA's cudnn-frontend would; no frontend header is needed.
//
// Errors throw ds::Error naming the call and cuDNN's reason (cudnnGetLastErrorString).
#pragma once

#include <cudnn_graph.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tensor/cuda/cudnn_library.h"

namespace ds::tensor::cuda::cudnn {

// Throws ds::Error for a failed status: "<what>: <status>: <cuDNN's message>".
void check(const CudnnLibrary& library, cudnnStatus_t status, const std::string& what);

// A backend descriptor, destroyed with its owner.
class Descriptor {
 public:
  Descriptor(const CudnnLibrary& library, cudnnBackendDescriptorType_t type);
  ~Descriptor();
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;

  Descriptor& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
                  const void* values);
  Descriptor& set_int64(cudnnBackendAttributeName_t name, std::initializer_list<int64_t> values);
  Descriptor& set_int64(cudnnBackendAttributeName_t name, const std::vector<int64_t>& values);
  Descriptor& set_descriptor(cudnnBackendAttributeName_t name, const Descriptor& value);
  Descriptor& set_descriptors(cudnnBackendAttributeName_t name,
                              const std::vector<const Descriptor*>& values);
  Descriptor& set_data_type(cudnnBackendAttributeName_t name, cudnnDataType_t value);
  Descriptor& set_bool(cudnnBackendAttributeName_t name, bool value);
  // Throws where cuDNN refuses the descriptor as set (its message says which attribute).
  void finalize();
  // Finalises, or returns cuDNN's reason for refusing ("" when it finalised).
  std::string try_finalize();

  cudnnBackendDescriptor_t get() const { return descriptor_; }
  const CudnnLibrary& library() const { return library_; }

 private:
  const CudnnLibrary& library_;
  cudnnBackendDescriptorType_t type_;
  cudnnBackendDescriptor_t descriptor_ = nullptr;
};

// A tensor's shape: dimensions and strides in elements (cuDNN's attention graphs use 4).
struct Shape {
  std::vector<int64_t> dims, strides;
};

// The tensors and nodes of one operation graph, built in order; then plan() finalises it.
class GraphBuilder {
 public:
  explicit GraphBuilder(const CudnnLibrary& library) : library_(library) {}

  // A tensor in memory, given its unique id (the variant pack names it by that), or a virtual
  // one (an intermediate that never reaches memory; its id is made here). By value: a host
  // scalar passed at execution (the attention's scale).
  const Descriptor& tensor(int64_t uid, const Shape& shape, cudnnDataType_t type);
  const Descriptor& virtual_tensor(const Shape& shape, cudnnDataType_t type = CUDNN_DATA_FLOAT);
  const Descriptor& scalar(int64_t uid, cudnnDataType_t type = CUDNN_DATA_FLOAT);

  // c = a · b over the last two dimensions, batched over the first two.
  void matmul(const Descriptor& a, const Descriptor& b, const Descriptor& c);
  // y = mode(x) or mode(x, b), computed in `precision` (comparisons: boolean); binary select
  // takes the condition as t (y = t ? x : b). Gen index writes each element's index along `axis`
  // (axis >= 0).
  struct PointwiseOptions {
    const Descriptor* t = nullptr;
    int64_t axis = -1;
    cudnnDataType_t precision = CUDNN_DATA_FLOAT;
  };
  void pointwise(cudnnPointwiseMode_t mode, const Descriptor& x, const Descriptor* b,
                 const Descriptor& y, const PointwiseOptions& options);
  void pointwise(cudnnPointwiseMode_t mode, const Descriptor& x, const Descriptor* b,
                 const Descriptor& y) {
    pointwise(mode, x, b, y, PointwiseOptions{});
  }
  // y = the reduction of x over the dimensions where y has size 1.
  void reduction(cudnnReduceTensorOp_t mode, const Descriptor& x, const Descriptor& y);
  // y = x seen through y's dimensions and strides (a transpose, for the attention's backward).
  void reshape(const Descriptor& x, const Descriptor& y);

  const CudnnLibrary& library() const { return library_; }

 private:
  friend class Plan;
  const Descriptor& own(std::unique_ptr<Descriptor> descriptor);
  const Descriptor& make_tensor(int64_t uid, const Shape& shape, cudnnDataType_t type,
                                bool is_virtual, bool by_value);

  const CudnnLibrary& library_;
  std::vector<std::unique_ptr<Descriptor>> owned_;  // tensors, node settings, nodes
  std::vector<const Descriptor*> nodes_;
  int64_t next_virtual_uid_ = int64_t{1} << 40;  // apart from the callers' ids
};

// An execution plan for a finished graph on `handle`: the first of the heuristics' (mode A)
// engine configurations that finalises. Throws naming every configuration's refusal where none
// does.
class Plan {
 public:
  Plan(const GraphBuilder& graph, cudnnHandle_t handle);
  int64_t workspace_bytes() const { return workspace_bytes_; }
  // Runs the plan on the handle's stream with the given tensors (ids and pointers, in memory or,
  // for by-value scalars, on the host) and a workspace of workspace_bytes().
  void execute(cudnnHandle_t handle, const std::vector<int64_t>& uids,
               const std::vector<void*>& pointers, void* workspace) const;
  // The engine's name for the log ("" where cuDNN gives none).
  const std::string& engine() const { return engine_; }

 private:
  const CudnnLibrary& library_;
  std::unique_ptr<Descriptor> graph_, plan_;
  int64_t workspace_bytes_ = 0;
  std::string engine_;
};

}  // namespace ds::tensor::cuda::cudnn
