# dsworker trains end to end (real processes, small models, seconds each).
ds_add_test(train_cli_test LABELS integration SOURCES train_cli_test.cpp LIBS ds_checkpoint)
add_dependencies(train_cli_test dsworker)
