ds_add_test(pipeline_test LABELS unit
  SOURCES pipeline_partition_test.cpp pipeline_schedule_test.cpp LIBS ds_pipeline)

# `dsworker train.cfg --print-schedule`, as a user runs it.
ds_add_test(pipeline_cli_test LABELS unit SOURCES pipeline_cli_test.cpp LIBS ds_util)
add_dependencies(pipeline_cli_test dsworker)
