ds_add_test(safetensors_test LABELS unit SOURCES safetensors_test.cpp LIBS ds_checkpoint)
