ds_add_test(safetensors_test LABELS unit SOURCES safetensors_test.cpp LIBS ds_checkpoint)

# Checkpoints end to end (real processes, signals).
ds_add_test(checkpoint_cli_test LABELS integration SOURCES checkpoint_cli_test.cpp
  LIBS ds_checkpoint)
add_dependencies(checkpoint_cli_test dsworker dsckpt)

# Hugging Face model folders (config.json, shards and their index).
ds_add_test(hf_model_test LABELS unit SOURCES hf_model_test.cpp LIBS ds_checkpoint)
