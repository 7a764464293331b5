ds_add_test(zero_test LABELS unit SOURCES zero_shard_test.cpp zero_engine_test.cpp zero_reduce_test.cpp
  zero_device_test.cpp LIBS ds_zero)

# ZeRO across real ranks under dslaunch (local processes).
ds_add_test(zero_dp_test LABELS integration SOURCES zero_dp_test.cpp LIBS ds_util)
add_dependencies(zero_dp_test dsworker dslaunch)
