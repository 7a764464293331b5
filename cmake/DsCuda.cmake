# Resolves DS_CUDA (AUTO|ON|OFF) into DS_WITH_CUDA and, when on, enables the CUDA
# language with the toolkit under /usr/local/cuda (or CUDAToolkit_ROOT).
set(DS_WITH_CUDA OFF)
string(TOUPPER "${DS_CUDA}" _ds_cuda)
if(NOT _ds_cuda MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "DS_CUDA must be AUTO, ON or OFF, not '${DS_CUDA}'")
endif()

if(NOT _ds_cuda STREQUAL "OFF")
  if(NOT CUDAToolkit_ROOT)
    set(CUDAToolkit_ROOT /usr/local/cuda)
  endif()
  find_program(DS_NVCC nvcc HINTS "${CUDAToolkit_ROOT}/bin" NO_DEFAULT_PATH)
  find_path(DS_NCCL_INCLUDE nccl.h HINTS "${CUDAToolkit_ROOT}/include" /usr/include)
  find_library(DS_NCCL_LIBRARY nccl HINTS "${CUDAToolkit_ROOT}/lib64" /usr/lib/x86_64-linux-gnu)
  if(DS_NVCC AND DS_NCCL_INCLUDE AND DS_NCCL_LIBRARY)
    set(DS_WITH_CUDA ON)
  elseif(_ds_cuda STREQUAL "ON")
    message(FATAL_ERROR "DS_CUDA=ON but the CUDA toolkit with NCCL was not found under "
                        "${CUDAToolkit_ROOT} (nvcc: ${DS_NVCC}, nccl.h: ${DS_NCCL_INCLUDE}, "
                        "libnccl: ${DS_NCCL_LIBRARY})")
  endif()
endif()

if(DS_WITH_CUDA)
  set(CMAKE_CUDA_COMPILER "${DS_NVCC}")
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    # A100 and H100 natively; PTX for newer parts.
    set(CMAKE_CUDA_ARCHITECTURES 80-real 90)
  endif()
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 17)  # CMake 3.25 knows no CUDA 20 flags for nvcc
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
  add_library(ds_nccl UNKNOWN IMPORTED)
  set_target_properties(ds_nccl PROPERTIES IMPORTED_LOCATION "${DS_NCCL_LIBRARY}"
                                           INTERFACE_INCLUDE_DIRECTORIES "${DS_NCCL_INCLUDE}")
  message(STATUS "dstrain: CUDA backend ON (${CMAKE_CUDA_COMPILER_VERSION})")
else()
  message(STATUS "dstrain: CUDA backend OFF")
endif()
