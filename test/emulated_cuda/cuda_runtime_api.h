// The emulation's <cuda_runtime_api.h> (see cuda_runtime.h here): what the op headers'
// declarations name.
#pragma once

#include <cuda_runtime.h>

struct CUstream_st;
using cudaStream_t = CUstream_st*;
