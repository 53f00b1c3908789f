# Install and export: headers, libattn, libattn_text, the CLI (tools/attn adds its own install rule),
# attnConfig.cmake + attnConfigVersion.cmake (targets attn::attn, attn::text, attn::models) and attn.pc for
# pkg-config (libattn only).
include(CMakePackageConfigHelpers)

set(ATTN_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/attn CACHE STRING "Where attnConfig.cmake is installed")

set_target_properties(attn PROPERTIES EXPORT_NAME attn)
set_target_properties(attn_text PROPERTIES EXPORT_NAME text)
set_target_properties(attn_models PROPERTIES EXPORT_NAME models)
# The public headers are C++20; consumers inherit the requirement.
target_compile_features(attn PUBLIC cxx_std_20)
install(TARGETS attn attn_text attn_models EXPORT attnTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/attn DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.hpp")
install(EXPORT attnTargets NAMESPACE attn:: FILE attnTargets.cmake DESTINATION ${ATTN_INSTALL_CMAKEDIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/attnConfig.cmake.in
  ${PROJECT_BINARY_DIR}/attnConfig.cmake INSTALL_DESTINATION ${ATTN_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/attnConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/attnConfig.cmake ${PROJECT_BINARY_DIR}/attnConfigVersion.cmake
  DESTINATION ${ATTN_INSTALL_CMAKEDIR})

# pkg-config. libattn links OpenMP: a static libattn needs the OpenMP flags on every link line,
# a shared one only for static linking (Libs.private).
get_target_property(ATTN_LIB_TYPE attn TYPE)
set(ATTN_PC_OPENMP "${OpenMP_CXX_FLAGS}")
# libattn links BLAS privately (src/CMakeLists.txt); list it the same way.
find_package(BLAS REQUIRED)
list(JOIN BLAS_LIBRARIES " " ATTN_PC_BLAS)
if(ATTN_HAVE_DNNL)
  string(APPEND ATTN_PC_BLAS " -ldnnl")
endif()
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
  string(APPEND ATTN_PC_BLAS " -lmvec")  # the activation passes' erfc/exp (src/CMakeLists.txt)
endif()
if(ATTN_LIB_TYPE STREQUAL "STATIC_LIBRARY")
  set(ATTN_PC_LIBS "-L\${libdir} -lattn ${ATTN_PC_OPENMP} ${ATTN_PC_BLAS}")
  set(ATTN_PC_LIBS_PRIVATE "")
else()
  set(ATTN_PC_LIBS "-L\${libdir} -lattn")
  set(ATTN_PC_LIBS_PRIVATE "${ATTN_PC_OPENMP} ${ATTN_PC_BLAS}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(ATTN_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  set(ATTN_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(ATTN_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(ATTN_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
# Relocatable: prefix is found from the .pc file's own place, so `cmake --install --prefix` works.
file(RELATIVE_PATH ATTN_PC_PREFIX_FROM_PCDIR "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
string(REGEX REPLACE "/$" "" ATTN_PC_PREFIX_FROM_PCDIR "${ATTN_PC_PREFIX_FROM_PCDIR}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/attn.pc.in ${PROJECT_BINARY_DIR}/attn.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/attn.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
