# The CUDA op layer (lib/tensor/cuda) against the CPU kernels. Labelled `cuda`: on a machine
# without a GPU every case WARNs and passes (scripts/gpu-check.sh runs them on one).
if(DS_WITH_CUDA)
  ds_add_test(cuda_kernels_test LABELS cuda
    SOURCES cuda_kernels_test.cpp cuda_llama_kernels_test.cpp cuda_adamw_test.cpp
    LIBS ds_tensor ds_optim)
endif()
