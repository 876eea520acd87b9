# ARM NN: a loader module that is always built, and one bridge per ARM NN ABI found at build time.
#
#   immich_ml._core._armnn               Cython module; links no ARM NN library. At run time it
#                                        dlopens a bridge (and, from a configured directory, the
#                                        board's libarmnn) and calls it through a function table.
#   immich_ml/_core/_armnn_bridge_abi<N>.so
#                                        csrc/armnn compiled against ARM NN headers whose
#                                        ARMNN_MAJOR_VERSION is N (= the libarmnn.so.N soname).
#                                        Its DT_NEEDED name libarmnn.so.N; nothing imports it, so a
#                                        wheel imports everywhere and wheels.sh keeps auditwheel from
#                                        grafting libarmnn into the wheel.
#
#   -DIMMICH_WITH_ARMNN=OFF          build no bridge (the loader then reports "no bridge")
#   -DARMNN_ROOT=/opt/armnn          look there first (include/ and lib/), e.g. a release tarball
#   -DIMMICH_ARMNN_ROOTS="a;b"       build one bridge per ARM NN tree (distinct ABIs), e.g. Debian's
#                                    20.08 (/usr, ABI 22) and an upstream release (ABI 33)
# Debian/Ubuntu: scripts/install-armnn.sh (libarmnn-dev, libarmnntfliteparser-dev, CpuRef backend).
option(IMMICH_WITH_ARMNN "Build ARM NN bridges where ARM NN is found" ON)

cython_transpile(${CMAKE_CURRENT_SOURCE_DIR}/pyx/_armnn.pyx
  LANGUAGE CXX
  MODULE_NAME immich_ml._core._armnn
  INCLUDE_DIRECTORIES ${CMAKE_CURRENT_SOURCE_DIR}/pyx
  OUTPUT_VARIABLE armnn_loader_cxx)
python_add_library(_armnn MODULE ${armnn_loader_cxx} WITH_SOABI)
target_include_directories(_armnn PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/csrc/armnn)
target_link_libraries(_armnn PRIVATE ${CMAKE_DL_LIBS})
install(TARGETS _armnn DESTINATION immich_ml/_core)

function(immich_armnn_skip root reason)
  message(STATUS "ARM NN bridge (${root}): skipped: ${reason}")
endfunction()

# Builds _armnn_bridge_abi<N> from the ARM NN found under `root` ("" = the default search path).
function(immich_build_armnn_bridge root)
  set(hints)
  set(label "system")
  if(root)
    set(hints HINTS ${root} NO_DEFAULT_PATH)
    set(label ${root})
  endif()
  find_path(inc armnn/ArmNN.hpp ${hints} PATH_SUFFIXES include NO_CACHE)
  find_library(lib armnn ${hints} PATH_SUFFIXES lib lib64 NO_CACHE)
  if(NOT inc)
    immich_armnn_skip(${label} "ARM NN headers (armnn/ArmNN.hpp) were not found; install libarmnn-dev or set ARMNN_ROOT")
    return()
  endif()
  if(NOT lib)
    immich_armnn_skip(${label} "libarmnn was not found; install libarmnn-dev or set ARMNN_ROOT")
    return()
  endif()
  file(STRINGS ${inc}/armnn/Version.hpp major_line REGEX "^#define ARMNN_MAJOR_VERSION [0-9]+")
  string(REGEX MATCH "[0-9]+$" abi "${major_line}")
  if(NOT abi)
    immich_armnn_skip(${label} "no ARMNN_MAJOR_VERSION in ${inc}/armnn/Version.hpp")
    return()
  endif()
  get_property(built GLOBAL PROPERTY IMMICH_ARMNN_ABIS)
  if(abi IN_LIST built)
    immich_armnn_skip(${label} "a bridge for ARM NN ABI ${abi} is already built")
    return()
  endif()

  # Upstream ships the .armnn reader as libarmnnDeserializer; Debian folds it into libarmnnSerializer.
  find_path(deserializer_inc armnnDeserializer/IDeserializer.hpp ${hints} PATH_SUFFIXES include NO_CACHE)
  find_library(deserializer_lib armnnDeserializer ${hints} PATH_SUFFIXES lib lib64 NO_CACHE)
  find_path(serializer_inc armnnSerializer/ISerializer.hpp ${hints} PATH_SUFFIXES include NO_CACHE)
  find_library(serializer_lib armnnSerializer ${hints} PATH_SUFFIXES lib lib64 NO_CACHE)
  find_path(tflite_inc armnnTfLiteParser/ITfLiteParser.hpp ${hints} PATH_SUFFIXES include NO_CACHE)
  find_library(tflite_lib armnnTfLiteParser ${hints} PATH_SUFFIXES lib lib64 NO_CACHE)
  find_path(onnx_inc armnnOnnxParser/IOnnxParser.hpp ${hints} PATH_SUFFIXES include NO_CACHE)
  find_library(onnx_lib armnnOnnxParser ${hints} PATH_SUFFIXES lib lib64 NO_CACHE)

  if(NOT deserializer_inc)
    immich_armnn_skip(${label} "armnnDeserializer/IDeserializer.hpp was not found (needed for .armnn models)")
    return()
  endif()
  set(libs ${lib})
  if(deserializer_lib)
    list(APPEND libs ${deserializer_lib})
  elseif(serializer_lib)
    list(APPEND libs ${serializer_lib})
  else()
    immich_armnn_skip(${label} "neither libarmnnDeserializer nor libarmnnSerializer was found (needed for .armnn models)")
    return()
  endif()
  set(have_serializer 0)
  set(have_tflite 0)
  set(have_onnx 0)
  set(features ".armnn")
  if(serializer_inc AND serializer_lib)
    set(have_serializer 1)
    list(APPEND libs ${serializer_lib})
    list(APPEND features ".armnn export")
  endif()
  if(tflite_inc AND tflite_lib)
    set(have_tflite 1)
    list(APPEND libs ${tflite_lib})
    list(APPEND features ".tflite")
  else()
    list(APPEND features "no TfLite parser")
  endif()
  if(onnx_inc AND onnx_lib)
    set(have_onnx 1)
    list(APPEND libs ${onnx_lib})
    list(APPEND features ".onnx")
  else()
    list(APPEND features "no ONNX parser")
  endif()
  list(REMOVE_DUPLICATES libs)
  set(defs IMMICH_ARMNN_HAVE_SERIALIZER=${have_serializer} IMMICH_ARMNN_HAVE_TFLITE=${have_tflite}
           IMMICH_ARMNN_HAVE_ONNX=${have_onnx})
  set(incs ${inc} ${deserializer_inc} ${CMAKE_CURRENT_SOURCE_DIR}/csrc/armnn)
  list(REMOVE_DUPLICATES incs)
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/csrc/armnn/*.cpp)

  # Compile and link the real bridge once against what was found: an ARM NN whose API this
  # bridge does not speak must skip the bridge, never break the whole build.
  list(TRANSFORM defs PREPEND "-D" OUTPUT_VARIABLE probe_defs)
  # Linked as a program, so every symbol the bridge uses must resolve in the libraries found.
  file(WRITE ${CMAKE_BINARY_DIR}/armnn_probe_main.cpp "int main() { return 0; }\n")
  try_compile(api_ok ${CMAKE_BINARY_DIR}/armnn_probe_${abi}
    SOURCES ${sources} ${CMAKE_BINARY_DIR}/armnn_probe_main.cpp
    CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${incs}"
    COMPILE_DEFINITIONS ${probe_defs}
    LINK_LIBRARIES ${libs}
    CXX_STANDARD 17
    OUTPUT_VARIABLE probe_output)
  file(REMOVE ${CMAKE_BINARY_DIR}/armnn_probe_${abi}.log)
  if(NOT api_ok)
    file(WRITE ${CMAKE_BINARY_DIR}/armnn_probe_${abi}.log "${probe_output}")
    immich_armnn_skip(${label} "ARM NN ${abi} was found (${lib}) but the bridge does not compile against it; see ${CMAKE_BINARY_DIR}/armnn_probe_${abi}.log")
    return()
  endif()

  set(target _armnn_bridge_abi${abi})
  add_library(${target} MODULE ${sources})
  set_target_properties(${target} PROPERTIES PREFIX "" CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  target_include_directories(${target} PRIVATE ${incs})
  target_compile_definitions(${target} PRIVATE ${defs})
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  # Every symbol must resolve against the libraries linked now: a bridge with a hole would only
  # fail when dlopen'ed on a board.
  target_link_options(${target} PRIVATE -Wl,--no-undefined)
  target_link_libraries(${target} PRIVATE ${libs})
  # No RPATH: the board's libarmnn is found by the loader's search path or preloaded by the
  # _armnn module from MACHINE_LEARNING_ANN_LIBRARY, never from where it was at build time.
  install(TARGETS ${target} LIBRARY DESTINATION immich_ml/_core)
  set_property(GLOBAL APPEND PROPERTY IMMICH_ARMNN_ABIS ${abi})
  list(JOIN features ", " feature_text)
  message(STATUS "ARM NN bridge ${target}: built against ${lib} (${feature_text})")
endfunction()

if(NOT IMMICH_WITH_ARMNN)
  message(STATUS "ARM NN bridges: none built (IMMICH_WITH_ARMNN=OFF)")
else()
  set(armnn_roots ${IMMICH_ARMNN_ROOTS})
  if(ARMNN_ROOT)
    list(APPEND armnn_roots ${ARMNN_ROOT})
  endif()
  if(DEFINED ENV{ARMNN_ROOT})
    list(APPEND armnn_roots $ENV{ARMNN_ROOT})
  endif()
  foreach(root ${armnn_roots})
    immich_build_armnn_bridge(${root})
  endforeach()
  if(NOT armnn_roots)
    immich_build_armnn_bridge("")
  endif()
endif()
