ds_add_test(golden_test LABELS golden SOURCES golden_test.cpp golden_checks.cpp
  LIBS ds_model ds_checkpoint ds_optim)

# The trainer against an independent PyTorch replay (skipped without python3-torch).
add_test(NAME replay_against_pytorch
  COMMAND bash "${CMAKE_CURRENT_SOURCE_DIR}/replay_test.sh" "${PROJECT_BINARY_DIR}/bin"
          "${PROJECT_SOURCE_DIR}")
set_tests_properties(replay_against_pytorch PROPERTIES LABELS golden SKIP_RETURN_CODE 77
  TIMEOUT 600)

# An exported checkpoint in PyTorch gives the loss dsworker reports (skipped without torch).
add_test(NAME export_loads_in_pytorch
  COMMAND bash "${CMAKE_CURRENT_SOURCE_DIR}/export_torch_test.sh" "${PROJECT_BINARY_DIR}/bin"
          "${PROJECT_SOURCE_DIR}")
set_tests_properties(export_loads_in_pytorch PROPERTIES LABELS golden SKIP_RETURN_CODE 77
  TIMEOUT 600)

# Hugging Face folders in (model: {from_hf}) and out (dsckpt export --format hf) against an
# independent PyTorch Llama (skipped without torch).
add_test(NAME hf_folders_match_pytorch
  COMMAND bash "${CMAKE_CURRENT_SOURCE_DIR}/hf_torch_test.sh" "${PROJECT_BINARY_DIR}/bin"
          "${PROJECT_SOURCE_DIR}")
set_tests_properties(hf_folders_match_pytorch PROPERTIES LABELS golden SKIP_RETURN_CODE 77
  TIMEOUT 600)
