# What users see: the reporter, MFU, the ds_config monitors and `dsworker sample`.
ds_add_test(reporter_test LABELS unit SOURCES reporter_test.cpp LIBS ds_worker)
ds_add_test(csv_monitor_test LABELS unit SOURCES csv_monitor_test.cpp LIBS ds_worker)
# Also reads its event file back with test/read_tfevents.py (an independent reader).
ds_add_test(tensorboard_test LABELS unit SOURCES tensorboard_test.cpp LIBS ds_worker)
ds_add_test(sample_test LABELS unit SOURCES sample_test.cpp LIBS ds_worker ds_checkpoint)
add_dependencies(sample_test dsworker)
