# Run by ctest with `cmake -P`: installs mproc from MPROC_BINARY_DIR into WORK_DIR/prefix,
# then configures, builds and runs the consumer project in CONSUMER_SOURCE_DIR against it.
# Inputs: MPROC_BINARY_DIR, CONSUMER_SOURCE_DIR, WORK_DIR, CXX_COMPILER, CXX_FLAGS, BUILD_TYPE.

# Runs one step and stops the test with its output when the step fails.
function(run_step description)
  message(STATUS "${description}: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${description} failed (${result})")
  endif()
endfunction()

set(prefix ${WORK_DIR}/prefix)
set(consumer_build ${WORK_DIR}/build)
# Start from nothing, so that a stale install or cache cannot make the test pass.
file(REMOVE_RECURSE ${WORK_DIR})

# The exported per-configuration targets file is installed only for the configuration that
# was built, so install and build the consumer with that one (empty when none was set).
set(config_args "")
if(BUILD_TYPE)
  set(config_args --config ${BUILD_TYPE})
endif()

run_step("Install mproc" ${CMAKE_COMMAND} --install ${MPROC_BINARY_DIR} --prefix ${prefix}
  ${config_args})
run_step("Configure the consumer" ${CMAKE_COMMAND}
  -S ${CONSUMER_SOURCE_DIR} -B ${consumer_build}
  -DCMAKE_PREFIX_PATH=${prefix}
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
  -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
  "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
  "-DCMAKE_EXE_LINKER_FLAGS=${CXX_FLAGS}")
run_step("Build the consumer" ${CMAKE_COMMAND} --build ${consumer_build} ${config_args})
run_step("Run the consumer" ${consumer_build}/consumer)
