# Optional native runtime bridges; each file decides whether it can build on this machine.
foreach(bridge armnn rknn)
  if(EXISTS ${CMAKE_CURRENT_LIST_DIR}/${bridge}.cmake)
    include(${CMAKE_CURRENT_LIST_DIR}/${bridge}.cmake)
  endif()
endforeach()
