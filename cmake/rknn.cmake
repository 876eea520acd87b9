# RKNN bridge: always built. It declares the librknnrt C ABI itself (csrc/rknn/rknn_abi.h) and
# opens librknnrt.so with dlopen at run time, so it needs no Rockchip headers and only libdl here;
# on a machine without the library the module imports and the backend reports why it is unavailable.
find_package(Threads REQUIRED)
add_library(immich_rknn_bridge STATIC
  ${CMAKE_CURRENT_SOURCE_DIR}/csrc/rknn/rknn_bridge.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/csrc/rknn/rknn_lease.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/csrc/rknn/rknn_runtime.cpp)
target_include_directories(immich_rknn_bridge PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/csrc)
target_compile_options(immich_rknn_bridge PRIVATE -O2 -Wall -Wextra)
target_link_libraries(immich_rknn_bridge PUBLIC ${CMAKE_DL_LIBS} Threads::Threads)
immich_add_wrapper(_rknn immich_rknn_bridge)
