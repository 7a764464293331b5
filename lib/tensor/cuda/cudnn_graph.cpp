#include "tensor/cuda/cudnn_graph.h"

#include <fmt/format.h>

#include "util/error.h"

namespace ds::tensor::cuda::cudnn {

void check(const CudnnLibrary& library, cudnnStatus_t status, const std::string& what) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  throw Error(fmt::format("cuDNN: {}: {}", what, library.describe(status)),
              "DS_CUDNN_ATTENTION=0 runs the attention on dstrain's own kernels; "
              "CUDNN_LOGERR_DBG=1 CUDNN_LOGDEST_DBG=stderr makes cuDNN say more");
}

Descriptor::Descriptor(const CudnnLibrary& library, cudnnBackendDescriptorType_t type)
    : library_(library), type_(type) {
  check(library_, library_.create_descriptor(type, &descriptor_),
        fmt::format("creating a descriptor of type {}", static_cast<int>(type)));
}

Descriptor::~Descriptor() {
  if (descriptor_ != nullptr) library_.destroy_descriptor(descriptor_);
}

Descriptor& Descriptor::set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
                            int64_t count, const void* values) {
  check(library_, library_.set_attribute(descriptor_, name, type, count, values),
        fmt::format("setting attribute {} of a descriptor of type {}", static_cast<int>(name),
                    static_cast<int>(type_)));
  return *this;
}

Descriptor& Descriptor::set_int64(cudnnBackendAttributeName_t name,
                                  std::initializer_list<int64_t> values) {
  return set(name, CUDNN_TYPE_INT64, static_cast<int64_t>(values.size()), values.begin());
}

Descriptor& Descriptor::set_int64(cudnnBackendAttributeName_t name,
                                  const std::vector<int64_t>& values) {
  return set(name, CUDNN_TYPE_INT64, static_cast<int64_t>(values.size()), values.data());
}

Descriptor& Descriptor::set_descriptor(cudnnBackendAttributeName_t name, const Descriptor& value) {
  const cudnnBackendDescriptor_t raw = value.get();
  return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw);
}

Descriptor& Descriptor::set_descriptors(cudnnBackendAttributeName_t name,
                                        const std::vector<const Descriptor*>& values) {
  std::vector<cudnnBackendDescriptor_t> raw;
  raw.reserve(values.size());
  for (const Descriptor* value : values) raw.push_back(value->get());
  return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, static_cast<int64_t>(raw.size()), raw.data());
}

Descriptor& Descriptor::set_data_type(cudnnBackendAttributeName_t name, cudnnDataType_t value) {
  return set(name, CUDNN_TYPE_DATA_TYPE, 1, &value);
}

Descriptor& Descriptor::set_bool(cudnnBackendAttributeName_t name, bool value) {
  return set(name, CUDNN_TYPE_BOOLEAN, 1, &value);
}

void Descriptor::finalize() {
  check(library_, library_.finalize(descriptor_),
        fmt::format("finalising a descriptor of type {}", static_cast<int>(type_)));
}

std::string Descriptor::try_finalize() {
  const cudnnStatus_t status = library_.finalize(descriptor_);
  return status == CUDNN_STATUS_SUCCESS ? std::string() : library_.describe(status);
}

const Descriptor& GraphBuilder::own(std::unique_ptr<Descriptor> descriptor) {
  owned_.push_back(std::move(descriptor));
  return *owned_.back();
}

const Descriptor& GraphBuilder::make_tensor(int64_t uid, const Shape& shape, cudnnDataType_t type,
                                            bool is_virtual, bool by_value) {
  auto t = std::make_unique<Descriptor>(library_, CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  t->set_data_type(CUDNN_ATTR_TENSOR_DATA_TYPE, type)
      .set_int64(CUDNN_ATTR_TENSOR_DIMENSIONS, shape.dims)
      .set_int64(CUDNN_ATTR_TENSOR_STRIDES, shape.strides)
      .set_int64(CUDNN_ATTR_TENSOR_UNIQUE_ID, {uid})
      .set_int64(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, {16})
      .set_bool(CUDNN_ATTR_TENSOR_IS_VIRTUAL, is_virtual);
  if (by_value) t->set_bool(CUDNN_ATTR_TENSOR_IS_BY_VALUE, true);
  t->finalize();
  return own(std::move(t));
}

const Descriptor& GraphBuilder::tensor(int64_t uid, const Shape& shape, cudnnDataType_t type) {
  return make_tensor(uid, shape, type, false, false);
}

const Descriptor& GraphBuilder::virtual_tensor(const Shape& shape, cudnnDataType_t type) {
  return make_tensor(next_virtual_uid_++, shape, type, true, false);
}

const Descriptor& GraphBuilder::scalar(int64_t uid, cudnnDataType_t type) {
  return make_tensor(uid, {{1, 1, 1, 1}, {1, 1, 1, 1}}, type, false, true);
}

void GraphBuilder::matmul(const Descriptor& a, const Descriptor& b, const Descriptor& c) {
  auto settings = std::make_unique<Descriptor>(library_, CUDNN_BACKEND_MATMUL_DESCRIPTOR);
  settings->set_data_type(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_DATA_FLOAT).finalize();
  auto node = std::make_unique<Descriptor>(library_, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
  node->set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a)
      .set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b)
      .set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c)
      .set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_DESC, *settings)
      .finalize();
  own(std::move(settings));
  nodes_.push_back(&own(std::move(node)));
}

void GraphBuilder::pointwise(cudnnPointwiseMode_t mode, const Descriptor& x, const Descriptor* b,
                             const Descriptor& y, const PointwiseOptions& options) {
  auto settings = std::make_unique<Descriptor>(library_, CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  settings->set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode)
      .set_data_type(CUDNN_ATTR_POINTWISE_MATH_PREC, options.precision);
  if (options.axis >= 0) settings->set_int64(CUDNN_ATTR_POINTWISE_AXIS, {options.axis});
  settings->finalize();
  auto node = std::make_unique<Descriptor>(library_, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  const float one = 1.0f;  // y = mode(alpha1 x, alpha2 b), as the frontend always sets them
  node->set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, *settings)
      .set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x)
      .set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &one)
      .set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &one);
  if (b != nullptr) node->set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, *b);
  node->set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
  if (options.t != nullptr) node->set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, *options.t);
  node->finalize();
  own(std::move(settings));
  nodes_.push_back(&own(std::move(node)));
}

void GraphBuilder::reduction(cudnnReduceTensorOp_t mode, const Descriptor& x, const Descriptor& y) {
  auto settings = std::make_unique<Descriptor>(library_, CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
  settings->set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode)
      .set_data_type(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_DATA_FLOAT)
      .finalize();
  auto node = std::make_unique<Descriptor>(library_, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
  node->set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x)
      .set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y)
      .set_descriptor(CUDNN_ATTR_OPERATION_REDUCTION_DESC, *settings)
      .finalize();
  own(std::move(settings));
  nodes_.push_back(&own(std::move(node)));
}

void GraphBuilder::reshape(const Descriptor& x, const Descriptor& y) {
  auto node = std::make_unique<Descriptor>(library_, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR);
  node->set_descriptor(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x)
      .set_descriptor(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y)
      .finalize();
  nodes_.push_back(&own(std::move(node)));
}

Plan::Plan(const GraphBuilder& graph, cudnnHandle_t handle) : library_(graph.library()) {
  graph_ = std::make_unique<Descriptor>(library_, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  graph_->set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle)
      .set_descriptors(CUDNN_ATTR_OPERATIONGRAPH_OPS, graph.nodes_);
  if (const std::string why = graph_->try_finalize(); !why.empty()) {
    throw Error(fmt::format("cuDNN refused the operation graph: {}", why),
                "DS_CUDNN_ATTENTION=0 runs the attention on dstrain's own kernels");
  }

  Descriptor heuristics(library_, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
  heuristics.set_descriptor(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, *graph_)
      .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode)
      .finalize();
  int64_t count = 0;
  check(library_,
        library_.get_attribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
        "counting the heuristics' engine configurations");
  std::vector<std::unique_ptr<Descriptor>> configs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (int64_t i = 0; i < count; ++i) {
    configs.push_back(std::make_unique<Descriptor>(library_, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
    raw.push_back(configs.back()->get());
  }
  int64_t returned = 0;
  if (count > 0) {
    check(library_,
          library_.get_attribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &returned, raw.data()),
          "reading the heuristics' engine configurations");
  }
  std::string refusals;
  for (int64_t i = 0; i < returned; ++i) {
    auto plan = std::make_unique<Descriptor>(library_, CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
    plan->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle)
        .set_descriptor(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, *configs[static_cast<size_t>(i)]);
    if (const std::string why = plan->try_finalize(); !why.empty()) {
      refusals += fmt::format("; configuration {}: {}", i, why);
      continue;
    }
    int64_t got = 0;  // elements returned, 1
    check(library_,
          library_.get_attribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                 CUDNN_TYPE_INT64, 1, &got, &workspace_bytes_),
          "reading the plan's workspace size");
    // The engine's number, for the log only: no error if cuDNN does not give it.
    Descriptor engine(library_, CUDNN_BACKEND_ENGINE_DESCRIPTOR);
    cudnnBackendDescriptor_t engine_raw = engine.get();
    int64_t index = -1;
    if (library_.get_attribute(configs[static_cast<size_t>(i)]->get(), CUDNN_ATTR_ENGINECFG_ENGINE,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &got,
                               &engine_raw) == CUDNN_STATUS_SUCCESS &&
        library_.get_attribute(engine_raw, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1,
                               &got, &index) == CUDNN_STATUS_SUCCESS) {
      engine_ = fmt::format("engine {} (configuration {} of {})", index, i, returned);
    }
    plan_ = std::move(plan);
    return;
  }
  throw Error(fmt::format("cuDNN has no engine for the graph ({} configurations offered{})",
                          returned, refusals),
              "DS_CUDNN_ATTENTION=0 runs the attention on dstrain's own kernels");
}

void Plan::execute(cudnnHandle_t handle, const std::vector<int64_t>& uids,
                   const std::vector<void*>& pointers, void* workspace) const {
  DS_CHECK(uids.size() == pointers.size(), "{} ids for {} pointers", uids.size(), pointers.size());
  Descriptor pack(library_, CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set_int64(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, uids)
      .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
           static_cast<int64_t>(pointers.size()), pointers.data())
      .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace)
      .finalize();
  check(library_, library_.execute(handle, plan_->get(), pack.get()), "executing a plan");
}

}  // namespace ds::tensor::cuda::cudnn
