ds_add_test(zero_test LABELS unit SOURCES zero_shard_test.cpp zero_engine_test.cpp LIBS ds_zero)
