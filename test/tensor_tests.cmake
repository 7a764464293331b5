ds_add_test(tensor_memory_test LABELS unit SOURCES tensor_memory_test.cpp LIBS ds_tensor)
ds_add_test(cpu_kernels_test LABELS unit SOURCES cpu_kernels_test.cpp LIBS ds_tensor)
# The tensor-core attention kernels against the CPU emulation of CUDA (emulated_cuda/ stands in
# for the toolkit's headers): no GPU or CUDA toolkit needed.
find_package(Threads REQUIRED)
ds_add_test(tensor_core_attention_emulated_test LABELS unit
  SOURCES tensor_core_attention_emulated_test.cpp LIBS ds_tensor Threads::Threads)
target_include_directories(tensor_core_attention_emulated_test BEFORE PRIVATE
  "${CMAKE_CURRENT_SOURCE_DIR}/emulated_cuda")
# nvcc's `#pragma unroll` means nothing to the host compiler.
target_compile_options(tensor_core_attention_emulated_test PRIVATE -Wno-unknown-pragmas)
ds_add_test(flash_attention_emulated_test LABELS unit
  SOURCES flash_attention_emulated_test.cpp LIBS ds_tensor Threads::Threads)
target_include_directories(flash_attention_emulated_test BEFORE PRIVATE
  "${CMAKE_CURRENT_SOURCE_DIR}/emulated_cuda")
target_compile_options(flash_attention_emulated_test PRIVATE -Wno-unknown-pragmas)
ds_add_test(op_kernels_emulated_test LABELS unit
  SOURCES op_kernels_emulated_test.cpp LIBS ds_tensor Threads::Threads)
target_include_directories(op_kernels_emulated_test BEFORE PRIVATE
  "${CMAKE_CURRENT_SOURCE_DIR}/emulated_cuda")
target_compile_options(op_kernels_emulated_test PRIVATE -Wno-unknown-pragmas)
