ds_add_test(tensor_memory_test LABELS unit SOURCES tensor_memory_test.cpp LIBS ds_tensor)
ds_add_test(cpu_kernels_test LABELS unit SOURCES cpu_kernels_test.cpp LIBS ds_tensor)
