# ARM NN bridge: immich_ml._core._armnn, built only where ARM NN's headers and libraries are found.
#   -DIMMICH_WITH_ARMNN=OFF   never build it (a wheel without ARM NN support)
#   -DARMNN_ROOT=/opt/armnn    look there first (include/ and lib/), e.g. an ARM NN release tarball
# Debian/Ubuntu: scripts/install-armnn.sh (libarmnn-dev, libarmnntfliteparser-dev, CpuRef backend).
option(IMMICH_WITH_ARMNN "Build the ARM NN bridge when ARM NN is found" ON)

function(immich_armnn_skip reason)
  message(STATUS "ARM NN bridge (immich_ml._core._armnn): skipped: ${reason}")
endfunction()

function(immich_build_armnn)
  if(NOT IMMICH_WITH_ARMNN)
    immich_armnn_skip("IMMICH_WITH_ARMNN=OFF")
    return()
  endif()
  set(hints)
  if(ARMNN_ROOT)
    list(APPEND hints ${ARMNN_ROOT})
  endif()
  if(DEFINED ENV{ARMNN_ROOT})
    list(APPEND hints $ENV{ARMNN_ROOT})
  endif()

  find_path(ARMNN_INCLUDE_DIR armnn/ArmNN.hpp HINTS ${hints} PATH_SUFFIXES include)
  find_library(ARMNN_LIBRARY armnn HINTS ${hints} PATH_SUFFIXES lib lib64)
  if(NOT ARMNN_INCLUDE_DIR)
    immich_armnn_skip("ARM NN headers (armnn/ArmNN.hpp) were not found; install libarmnn-dev or set ARMNN_ROOT")
    return()
  endif()
  if(NOT ARMNN_LIBRARY)
    immich_armnn_skip("libarmnn was not found; install libarmnn-dev or set ARMNN_ROOT")
    return()
  endif()

  # Upstream ships the .armnn reader as libarmnnDeserializer; Debian folds it into libarmnnSerializer.
  find_path(ARMNN_DESERIALIZER_INCLUDE_DIR armnnDeserializer/IDeserializer.hpp HINTS ${hints} PATH_SUFFIXES include)
  find_library(ARMNN_DESERIALIZER_LIBRARY armnnDeserializer HINTS ${hints} PATH_SUFFIXES lib lib64)
  find_path(ARMNN_SERIALIZER_INCLUDE_DIR armnnSerializer/ISerializer.hpp HINTS ${hints} PATH_SUFFIXES include)
  find_library(ARMNN_SERIALIZER_LIBRARY armnnSerializer HINTS ${hints} PATH_SUFFIXES lib lib64)
  find_path(ARMNN_TFLITE_INCLUDE_DIR armnnTfLiteParser/ITfLiteParser.hpp HINTS ${hints} PATH_SUFFIXES include)
  find_library(ARMNN_TFLITE_LIBRARY armnnTfLiteParser HINTS ${hints} PATH_SUFFIXES lib lib64)
  find_path(ARMNN_ONNX_INCLUDE_DIR armnnOnnxParser/IOnnxParser.hpp HINTS ${hints} PATH_SUFFIXES include)
  find_library(ARMNN_ONNX_LIBRARY armnnOnnxParser HINTS ${hints} PATH_SUFFIXES lib lib64)

  if(NOT ARMNN_DESERIALIZER_INCLUDE_DIR)
    immich_armnn_skip("armnnDeserializer/IDeserializer.hpp was not found (needed for .armnn models)")
    return()
  endif()
  set(libs ${ARMNN_LIBRARY})
  if(ARMNN_DESERIALIZER_LIBRARY)
    list(APPEND libs ${ARMNN_DESERIALIZER_LIBRARY})
  elseif(ARMNN_SERIALIZER_LIBRARY)
    list(APPEND libs ${ARMNN_SERIALIZER_LIBRARY})
  else()
    immich_armnn_skip("neither libarmnnDeserializer nor libarmnnSerializer was found (needed for .armnn models)")
    return()
  endif()
  set(have_serializer 0)
  set(have_tflite 0)
  set(have_onnx 0)
  set(features ".armnn")
  if(ARMNN_SERIALIZER_INCLUDE_DIR AND ARMNN_SERIALIZER_LIBRARY)
    set(have_serializer 1)
    list(APPEND libs ${ARMNN_SERIALIZER_LIBRARY})
    list(APPEND features ".armnn export")
  endif()
  if(ARMNN_TFLITE_INCLUDE_DIR AND ARMNN_TFLITE_LIBRARY)
    set(have_tflite 1)
    list(APPEND libs ${ARMNN_TFLITE_LIBRARY})
    list(APPEND features ".tflite")
  else()
    list(APPEND features "no TfLite parser")
  endif()
  if(ARMNN_ONNX_INCLUDE_DIR AND ARMNN_ONNX_LIBRARY)
    set(have_onnx 1)
    list(APPEND libs ${ARMNN_ONNX_LIBRARY})
    list(APPEND features ".onnx")
  else()
    list(APPEND features "no ONNX parser")
  endif()
  list(REMOVE_DUPLICATES libs)
  set(defs IMMICH_ARMNN_HAVE_SERIALIZER=${have_serializer} IMMICH_ARMNN_HAVE_TFLITE=${have_tflite}
           IMMICH_ARMNN_HAVE_ONNX=${have_onnx})
  set(incs ${ARMNN_INCLUDE_DIR} ${ARMNN_DESERIALIZER_INCLUDE_DIR} ${CMAKE_CURRENT_SOURCE_DIR}/csrc/armnn)
  list(REMOVE_DUPLICATES incs)
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/csrc/armnn/*.cpp)

  # Compile and link the real bridge once against what was found: an ARM NN whose API this
  # bridge does not speak must skip the bridge, never break the whole build.
  list(TRANSFORM defs PREPEND "-D" OUTPUT_VARIABLE probe_defs)
  # Linked as a program, so every symbol the bridge uses must resolve in the libraries found.
  file(WRITE ${CMAKE_BINARY_DIR}/armnn_probe_main.cpp "int main() { return 0; }\n")
  try_compile(armnn_api_ok ${CMAKE_BINARY_DIR}/armnn_probe
    SOURCES ${sources} ${CMAKE_BINARY_DIR}/armnn_probe_main.cpp
    CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${incs}"
    COMPILE_DEFINITIONS ${probe_defs}
    LINK_LIBRARIES ${libs}
    CXX_STANDARD 17
    OUTPUT_VARIABLE probe_output)
  file(REMOVE ${CMAKE_BINARY_DIR}/armnn_probe.log)
  if(NOT armnn_api_ok)
    file(WRITE ${CMAKE_BINARY_DIR}/armnn_probe.log "${probe_output}")
    immich_armnn_skip("ARM NN was found (${ARMNN_LIBRARY}) but the bridge does not compile against it; see ${CMAKE_BINARY_DIR}/armnn_probe.log")
    return()
  endif()

  cython_transpile(${CMAKE_CURRENT_SOURCE_DIR}/pyx/_armnn.pyx
    LANGUAGE CXX
    MODULE_NAME immich_ml._core._armnn
    INCLUDE_DIRECTORIES ${CMAKE_CURRENT_SOURCE_DIR}/pyx
    OUTPUT_VARIABLE armnn_cxx)
  python_add_library(_armnn MODULE ${armnn_cxx} ${sources} WITH_SOABI)
  target_include_directories(_armnn PRIVATE ${incs})
  target_compile_definitions(_armnn PRIVATE ${defs})
  set_source_files_properties(${sources} PROPERTIES COMPILE_OPTIONS "-Wall;-Wextra")
  target_link_libraries(_armnn PRIVATE ${libs})
  # An ARM NN outside the system library path (ARMNN_ROOT) must still load at run time.
  get_filename_component(armnn_libdir ${ARMNN_LIBRARY} DIRECTORY)
  if(NOT armnn_libdir IN_LIST CMAKE_CXX_IMPLICIT_LINK_DIRECTORIES)
    set_target_properties(_armnn PROPERTIES INSTALL_RPATH "${armnn_libdir}")
  endif()
  install(TARGETS _armnn DESTINATION immich_ml/_core)
  list(JOIN features ", " feature_text)
  message(STATUS "ARM NN bridge (immich_ml._core._armnn): built against ${ARMNN_LIBRARY} (${feature_text})")
endfunction()

immich_build_armnn()
