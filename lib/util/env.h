// Environment switches: the DS_* variables that turn an optimisation off for a comparison or a
// workaround (DS_GEMM_TUNING, DS_CUDNN_ATTENTION), read the same way everywhere.
#pragma once

#include <string_view>

namespace ds {

// Whether the switch `name` is on: unset or "1" is on, "0" off; any other value is warned about
// ("<name>=<value> is neither 0 nor 1: <when_on>, as when unset") and taken as on.
bool env_switch(const char* name, std::string_view when_on);

}  // namespace ds
