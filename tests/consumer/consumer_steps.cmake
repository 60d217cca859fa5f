# Steps shared by the scripts that build tests/consumer/project against an installed mproc.

# Runs one step and stops the test with its output when the step fails.
function(run_step description)
  message(STATUS "${description}: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${description} failed (${result})")
  endif()
endfunction()

# Stops the test with what to install when a program the test needs is missing: a test that
# skipped itself would hide that a packaging path was never checked.
function(require_program variable name debian_package)
  find_program(${variable} ${name})
  if(NOT ${variable})
    message(FATAL_ERROR "${name} not found: install the Debian package ${debian_package} "
      "(scripts/test installs it)")
  endif()
endfunction()

# Runs the built consumer and checks that it printed the squares it computed in a pool.
function(run_consumer program)
  message(STATUS "Run the consumer: ${program}")
  execute_process(COMMAND ${program} RESULT_VARIABLE result OUTPUT_VARIABLE output)
  message(STATUS "The consumer printed: ${output}")
  if(NOT result EQUAL 0 OR NOT output MATCHES "^1 4 9 \n$")
    message(FATAL_ERROR "the consumer failed (${result}) or did not print 1 4 9")
  endif()
endfunction()

# Configures and builds the CMake consumer project against the mproc found in prefix, checks
# that find_package took that one and not another install, and runs it.
# Uses CONSUMER_SOURCE_DIR, CXX_COMPILER, CXX_FLAGS and BUILD_TYPE.
function(build_and_run_cmake_consumer prefix build_dir)
  # The exported per-configuration targets file is installed only for the configuration that
  # was built, so build the consumer with that one (empty when none was set).
  set(config_args "")
  if(BUILD_TYPE)
    set(config_args --config ${BUILD_TYPE})
  endif()
  run_step("Configure the consumer" ${CMAKE_COMMAND}
    -S ${CONSUMER_SOURCE_DIR} -B ${build_dir}
    -DCMAKE_PREFIX_PATH=${prefix}
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
    -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
    "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
    "-DCMAKE_EXE_LINKER_FLAGS=${CXX_FLAGS}")
  file(STRINGS ${build_dir}/CMakeCache.txt mproc_dir REGEX "^mproc_DIR:")
  string(FIND "${mproc_dir}" "=${prefix}/" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "the consumer found mproc elsewhere than ${prefix}: ${mproc_dir}")
  endif()
  run_step("Build the consumer" ${CMAKE_COMMAND} --build ${build_dir} ${config_args})
  run_consumer(${build_dir}/consumer)
endfunction()
