# dsworker trains end to end (real processes, small models, seconds each).
ds_add_test(train_cli_test LABELS integration SOURCES train_cli_test.cpp LIBS ds_checkpoint)
add_dependencies(train_cli_test dsworker)
# Which device and backend a rank gets: a pure decision, every case without a GPU.
ds_add_test(device_choice_test LABELS unit SOURCES device_choice_test.cpp LIBS ds_worker)
