# Installs attn from BUILD_DIR into WORK/prefix, then builds tests/consumer against it twice:
# with find_package(attn) (CMake) and with pkg-config (when available), and runs both.
# Invoked by ctest: cmake -DBUILD_DIR=... -DWORK=... -DSRC=... -DCXX=... -DCXX_FLAGS=... -DLINK_FLAGS=...
#   -DGENERATOR=... -DBUILD_TYPE=... -P run_consumer.cmake
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGV}")
    message(FATAL_ERROR "failed (${rc}): ${cmd}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK})
set(prefix ${WORK}/prefix)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
foreach(f include/attn/sdpa.hpp include/attn/text/wordpiece.hpp lib/cmake/attn/attnConfig.cmake lib/cmake/attn/attnConfigVersion.cmake lib/pkgconfig/attn.pc)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "cmake --install did not install ${f}")
  endif()
endforeach()

run(${CMAKE_COMMAND} -S ${SRC} -B ${WORK}/build -G ${GENERATOR} -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
    -DCMAKE_CXX_COMPILER=${CXX} "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${LINK_FLAGS}"
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON)
run(${CMAKE_COMMAND} --build ${WORK}/build)
run(${WORK}/build/attn_consumer)
run(${WORK}/build/attn_text_consumer)
run(${WORK}/build/attn_models_consumer)

find_program(PKG_CONFIG pkg-config)
if(PKG_CONFIG)
  set(ENV{PKG_CONFIG_PATH} ${prefix}/lib/pkgconfig)
  execute_process(COMMAND ${PKG_CONFIG} --cflags --libs attn OUTPUT_VARIABLE pc_flags RESULT_VARIABLE rc
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config --cflags --libs attn failed")
  endif()
  message(STATUS "pkg-config attn: ${pc_flags}")
  separate_arguments(pc_args UNIX_COMMAND "${pc_flags}")
  separate_arguments(flag_args UNIX_COMMAND "${CXX_FLAGS} ${LINK_FLAGS}")
  run(${CXX} -std=c++20 ${flag_args} ${SRC}/main.cpp ${pc_args} -o ${WORK}/attn_consumer_pc)
  run(${WORK}/attn_consumer_pc)
endif()
