# Warnings are errors-in-waiting: every target of the project builds with these.
add_library(ds_warnings INTERFACE)
target_compile_options(ds_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor>)
