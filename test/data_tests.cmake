# lib/data: token datasets and the sampler.
ds_add_test(data_test LABELS unit
  SOURCES data_token_dataset_test.cpp data_sampler_test.cpp
  LIBS ds_data)
ds_add_test(data_documents_test LABELS unit
  SOURCES data_documents_test.cpp
  LIBS ds_data ds_tokenizer nlohmann_json::nlohmann_json)
# dsworker on JSON-lines instruction data (real processes).
ds_add_test(data_instruct_cli_test LABELS integration SOURCES data_instruct_cli_test.cpp
  LIBS ds_util)
add_dependencies(data_instruct_cli_test dsworker)
