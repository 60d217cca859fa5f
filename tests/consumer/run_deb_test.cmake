# Run by ctest with `cmake -P`: makes the .deb with `cpack -G DEB` from MPROC_BINARY_DIR,
# checks its dependencies, unpacks it with `dpkg-deb -x` into WORK_DIR/root, and configures,
# builds and runs the consumer project in CONSUMER_SOURCE_DIR against WORK_DIR/root/usr.
# Inputs: MPROC_BINARY_DIR, CPACK_COMMAND, CONSUMER_SOURCE_DIR, WORK_DIR, CXX_COMPILER,
# CXX_FLAGS, BUILD_TYPE.
include(${CMAKE_CURRENT_LIST_DIR}/consumer_steps.cmake)

require_program(dpkg_deb dpkg-deb dpkg)
# CPack's dpkg-shlibdeps step needs both; without them it would quietly leave shared
# libraries' dependencies out of the package.
require_program(dpkg_shlibdeps dpkg-shlibdeps dpkg-dev)
require_program(file_program file file)

set(root ${WORK_DIR}/root)
file(REMOVE_RECURSE ${WORK_DIR})

set(config_args "")
if(BUILD_TYPE)
  set(config_args -C ${BUILD_TYPE})
endif()
run_step("Make the .deb" ${CPACK_COMMAND} -G DEB --config ${MPROC_BINARY_DIR}/CPackConfig.cmake
  -B ${WORK_DIR}/package ${config_args})
file(GLOB debs ${WORK_DIR}/package/*.deb)
list(LENGTH debs count)
if(NOT count EQUAL 1)
  message(FATAL_ERROR "expected one .deb in ${WORK_DIR}/package, found: ${debs}")
endif()

execute_process(COMMAND ${dpkg_deb} --field ${debs} Package Depends
  RESULT_VARIABLE result OUTPUT_VARIABLE fields)
message(STATUS "The package's control fields:\n${fields}")
if(NOT result EQUAL 0 OR NOT fields MATCHES "Package: libmproc-dev\n"
    OR NOT fields MATCHES "Depends: [^\n]*libcereal-dev")
  message(FATAL_ERROR "the .deb is not libmproc-dev depending on libcereal-dev")
endif()

run_step("Unpack the .deb" ${dpkg_deb} -x ${debs} ${root})
build_and_run_cmake_consumer(${root}/usr ${WORK_DIR}/build)
