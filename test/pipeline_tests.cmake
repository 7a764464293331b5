ds_add_test(pipeline_test LABELS unit
  SOURCES pipeline_partition_test.cpp pipeline_schedule_test.cpp LIBS ds_pipeline)

# `dsworker train.cfg --print-schedule`, as a user runs it.
ds_add_test(pipeline_cli_test LABELS unit SOURCES pipeline_cli_test.cpp LIBS ds_util)
add_dependencies(pipeline_cli_test dsworker)

# Pipelines across real ranks under dslaunch (local processes).
ds_add_test(pipeline_dp_test LABELS integration SOURCES pipeline_dp_test.cpp LIBS ds_util)
add_dependencies(pipeline_dp_test dsworker dslaunch)
