# dsworker trains end to end (real processes, small models, seconds each).
ds_add_test(train_cli_test LABELS integration SOURCES train_cli_test.cpp LIBS ds_checkpoint)
add_dependencies(train_cli_test dsworker)
# Which device and backend a rank gets: a pure decision, every case without a GPU.
ds_add_test(device_choice_test LABELS unit SOURCES device_choice_test.cpp LIBS ds_worker)
ds_add_test(gpu_sharing_test LABELS unit SOURCES gpu_sharing_test.cpp LIBS ds_worker ds_bench)
ds_add_test(nccl_environment_test LABELS unit SOURCES nccl_environment_test.cpp LIBS ds_worker)
# The device paths across real processes on the emulated device (no GPU needed).
ds_add_test(device_emulated_test LABELS integration SOURCES device_emulated_test.cpp LIBS ds_util)
add_dependencies(device_emulated_test dsworker dslaunch)
