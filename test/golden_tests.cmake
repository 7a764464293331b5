ds_add_test(golden_test LABELS golden SOURCES golden_test.cpp LIBS ds_model ds_checkpoint ds_optim)
