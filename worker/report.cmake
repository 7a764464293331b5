# What users see: the reporter (progress, metrics, MFU), the ds_config monitors
# (csv_monitor, tensorboard) and `dsworker sample`. Part of ds_worker, since the
# trainer calls the reporter and the reporter reuses the metrics writer.
target_sources(ds_worker PRIVATE
  reporter.cpp
  mfu.cpp
  sample_command.cpp
  monitors/csv_monitor.cpp
  monitors/tensorboard_writer.cpp)
