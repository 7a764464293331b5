# Every shell example in README.md and docs/*.md marked <!-- test --> runs as written
# (test/docs_examples_test.sh), against this build's programs.
add_test(NAME docs_examples
  COMMAND "${CMAKE_CURRENT_SOURCE_DIR}/docs_examples_test.sh" "${PROJECT_SOURCE_DIR}"
          "${PROJECT_BINARY_DIR}")
set_tests_properties(docs_examples PROPERTIES LABELS integration SKIP_RETURN_CODE 77
  TIMEOUT 900)
