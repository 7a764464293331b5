# lib/data: token datasets and the sampler.
ds_add_test(data_test LABELS unit
  SOURCES data_token_dataset_test.cpp data_sampler_test.cpp
  LIBS ds_data)
