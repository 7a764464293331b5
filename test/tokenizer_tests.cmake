# Byte-level BPE tokenizer (lib/tokenizer); skipped with the library when the Unicode
# Character Database is missing (see lib/tokenizer/CMakeLists.txt).
if(TARGET ds_tokenizer)
  ds_add_test(tokenizer_test LABELS unit SOURCES tokenizer_test.cpp LIBS ds_tokenizer)

  # encode/bench/train front end for scripts/check_tokenizer.py and bench/tokenizer_bench.sh.
  add_executable(tokenizer_tool tokenizer_tool.cpp)
  target_link_libraries(tokenizer_tool PRIVATE ds_tokenizer nlohmann_json::nlohmann_json
    ds_warnings)

  # Against the Python `tokenizers` library, only where it can be imported.
  find_package(Python3 COMPONENTS Interpreter)
  if(Python3_Interpreter_FOUND)
    execute_process(COMMAND "${Python3_EXECUTABLE}" -c "import tokenizers"
      RESULT_VARIABLE ds_hf_tokenizers_rc OUTPUT_QUIET ERROR_QUIET)
    if(ds_hf_tokenizers_rc EQUAL 0)
      add_test(NAME tokenizer_check_hf
        COMMAND "${Python3_EXECUTABLE}" "${PROJECT_SOURCE_DIR}/scripts/check_tokenizer.py"
          --tool $<TARGET_FILE:tokenizer_tool> --self-test
          "${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_sample.txt")
      set_tests_properties(tokenizer_check_hf PROPERTIES LABELS unit)
    endif()
  endif()
endif()
