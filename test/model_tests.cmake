ds_add_test(model_test LABELS unit
  SOURCES model_range_test.cpp model_llama_test.cpp model_checkpoint_test.cpp
  model_device_buffers_test.cpp LIBS ds_model)
