# Run by ctest with `cmake -P`: installs mproc's development files from MPROC_BINARY_DIR into
# WORK_DIR/prefix, then builds CONSUMER_SOURCE_DIR/main.cpp as a Make user would, with one
# compiler command and `pkg-config --cflags --libs mproc`, and runs it.
# Inputs: MPROC_BINARY_DIR, CONSUMER_SOURCE_DIR, WORK_DIR, LIBDIR, CXX_COMPILER, CXX_FLAGS,
# BUILD_TYPE.
include(${CMAKE_CURRENT_LIST_DIR}/consumer_steps.cmake)

require_program(pkg_config pkg-config pkgconf)
require_program(shell sh dash)

set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

set(config_args "")
if(BUILD_TYPE)
  set(config_args --config ${BUILD_TYPE})
endif()
run_step("Install mproc" ${CMAKE_COMMAND} --install ${MPROC_BINARY_DIR} --prefix ${prefix}
  --component development ${config_args})

# The shell gets the compiler, source, output and pkg-config as arguments and splits CXX_FLAGS
# (extra flags, such as the sanitizers of a sanitized libmproc) as a Makefile would.
set(script [=[
set -eu
flags=$("$4" --cflags --libs mproc)
echo "pkg-config --cflags --libs mproc: $flags"
exec "$1" -std=c++20 $5 "$2" -o "$3" $flags
]=])
run_step("Build the consumer with pkg-config"
  ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${prefix}/${LIBDIR}/pkgconfig
  ${shell} -c "${script}" sh
  ${CXX_COMPILER} ${CONSUMER_SOURCE_DIR}/main.cpp ${WORK_DIR}/consumer ${pkg_config}
  "${CXX_FLAGS}")
run_consumer(${WORK_DIR}/consumer)
