# Tests of lib/comm (stores, process groups, backends), the worker bootstrap and dsbench comm.
# unit: one process (ranks as threads where needed); integration: real processes on loopback.
ds_add_test(store_test LABELS unit
  SOURCES store_hash_test.cpp store_tcp_test.cpp LIBS ds_comm_store)
ds_add_test(comm_unit_test LABELS unit SOURCES comm_unit_test.cpp LIBS ds_comm ds_bench)
ds_add_test(bootstrap_test LABELS unit SOURCES bootstrap_test.cpp LIBS ds_worker)
ds_add_test(comm_collectives_test LABELS integration
  SOURCES comm_collectives_test.cpp LIBS ds_comm ds_bench)
ds_add_test(comm_failure_test LABELS integration
  SOURCES comm_failure_test.cpp LIBS ds_comm ds_bench)
ds_add_test(comm_bootstrap_test LABELS integration
  SOURCES comm_bootstrap_test.cpp LIBS ds_worker ds_bench)
ds_add_test(comm_bench_test LABELS integration
  SOURCES comm_bench_test.cpp LIBS ds_util nlohmann_json::nlohmann_json)
add_dependencies(comm_bench_test dsbench)
if(DS_WITH_CUDA)
  ds_add_test(comm_nccl_test LABELS cuda SOURCES comm_nccl_test.cpp LIBS ds_comm ds_bench CUDA::cudart)
endif()
