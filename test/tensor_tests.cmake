ds_add_test(tensor_memory_test LABELS unit SOURCES tensor_memory_test.cpp LIBS ds_tensor)
ds_add_test(cpu_kernels_test LABELS unit SOURCES cpu_kernels_test.cpp LIBS ds_tensor)
# The host side of the GPU embedding backward's token buckets.
ds_add_test(token_grouping_test LABELS unit SOURCES token_grouping_test.cpp LIBS ds_tensor)
# The table of the CUDA ops' profiler.
ds_add_test(op_times_test LABELS unit SOURCES op_times_test.cpp LIBS ds_tensor)
# The bookkeeping behind the CUDA kernels' run-time choice between variants.
ds_add_test(variant_choice_test LABELS unit SOURCES variant_choice_test.cpp LIBS ds_tensor)
# Kernels built with the host compiler against the CPU emulation of CUDA (emulated_cuda/ stands
# in for the toolkit's headers): no GPU or CUDA toolkit needed.
find_package(Threads REQUIRED)
function(ds_add_emulated_cuda_test name)
  ds_add_test(${name} LABELS unit SOURCES ${name}.cpp LIBS ds_tensor Threads::Threads)
  target_include_directories(${name} BEFORE PRIVATE "${CMAKE_CURRENT_SOURCE_DIR}/emulated_cuda")
  # nvcc's `#pragma unroll` means nothing to the host compiler.
  target_compile_options(${name} PRIVATE -Wno-unknown-pragmas)
endfunction()
ds_add_emulated_cuda_test(tensor_core_attention_emulated_test)
ds_add_emulated_cuda_test(flash_attention_emulated_test)
ds_add_emulated_cuda_test(op_kernels_emulated_test)
ds_add_emulated_cuda_test(storage_kernels_emulated_test)
