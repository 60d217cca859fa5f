# Run by ctest with `cmake -P`: installs mproc from MPROC_BINARY_DIR into WORK_DIR/prefix,
# then configures, builds and runs the consumer project in CONSUMER_SOURCE_DIR against it.
# Inputs: MPROC_BINARY_DIR, CONSUMER_SOURCE_DIR, WORK_DIR, CXX_COMPILER, CXX_FLAGS, BUILD_TYPE.
include(${CMAKE_CURRENT_LIST_DIR}/consumer_steps.cmake)

set(prefix ${WORK_DIR}/prefix)
# Start from nothing, so that a stale install or cache cannot make the test pass.
file(REMOVE_RECURSE ${WORK_DIR})

set(config_args "")
if(BUILD_TYPE)
  set(config_args --config ${BUILD_TYPE})
endif()
run_step("Install mproc" ${CMAKE_COMMAND} --install ${MPROC_BINARY_DIR} --prefix ${prefix}
  ${config_args})
build_and_run_cmake_consumer(${prefix} ${WORK_DIR}/build)
