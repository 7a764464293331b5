# The CUDA op layer (lib/tensor/cuda) against the CPU kernels. Labelled `cuda`: on a machine
# without a GPU every case WARNs and passes (scripts/gpu-check.sh runs them on one).
if(DS_WITH_CUDA)
  ds_add_test(cuda_kernels_test LABELS cuda
    SOURCES cuda_kernels_test.cpp cuda_llama_kernels_test.cpp cuda_adamw_test.cpp
            cuda_bf16_kernels_test.cpp cuda_lt_matmul_test.cpp
    LIBS ds_tensor ds_optim)
  # The golden PyTorch fixtures with the model on the GPU (tensor::cuda::CudaOps).
  ds_add_test(cuda_golden_test LABELS cuda SOURCES cuda_golden_test.cpp golden_checks.cpp
    LIBS ds_model ds_checkpoint ds_optim)
  # The ZeRO engine with its model on the GPU against the same engine on the CPU.
  ds_add_test(cuda_engine_test LABELS cuda SOURCES cuda_engine_test.cpp LIBS ds_zero)
  # The engine-side ops (casts, norms, updates) of CudaOps against cpu_ops().
  ds_add_test(cuda_ops_test LABELS cuda SOURCES cuda_ops_test.cpp LIBS ds_tensor)
  # dsworker and dslaunch with train.device: cuda.
  ds_add_test(cuda_train_test LABELS cuda SOURCES cuda_train_test.cpp LIBS ds_tensor ds_comm)
  add_dependencies(cuda_train_test dsworker dslaunch)
endif()
