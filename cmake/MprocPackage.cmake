# `cpack -G DEB` in a build tree makes libmproc-dev_<version>_<arch>.deb: the library, its
# headers, its CMake package and mproc.pc (the install component "development", so not the
# examples' programs), installed under /usr. Make it from a release build: a dev build's
# library carries the sanitizers, and so would the package.

set(CPACK_PACKAGE_NAME mproc)
set(CPACK_PACKAGE_VENDOR mproc)
set(CPACK_PACKAGE_CONTACT "mproc developers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "Python's multiprocessing for C++20: Pool, Process, Queue, Manager, shared memory")
if(MPROC_SANITIZE)
  string(APPEND CPACK_PACKAGE_DESCRIPTION_SUMMARY
    " (built with ASan and UBSan: link with -fsanitize=address,undefined)")
endif()
set(CPACK_GENERATOR DEB)
set(CPACK_INSTALL_CMAKE_PROJECTS "${PROJECT_BINARY_DIR};${PROJECT_NAME};development;/")

set(CPACK_DEBIAN_PACKAGE_NAME libmproc-dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
# What a user's build needs besides the package: cereal's headers, which mproc's headers
# include, and a libstdc++ at least as new as the one the library was compiled against.
set(MPROC_DEB_DEPENDS libcereal-dev)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  string(REGEX MATCH "^[0-9]+" gcc_major "${CMAKE_CXX_COMPILER_VERSION}")
  list(APPEND MPROC_DEB_DEPENDS "libstdc++-${gcc_major}-dev")
endif()
list(JOIN MPROC_DEB_DEPENDS ", " CPACK_DEBIAN_PACKAGE_DEPENDS)
# A static libmproc (the default) links to no shared library itself; a shared one
# (BUILD_SHARED_LIBS=ON) gets its libc6, libstdc++6, ... from dpkg-shlibdeps.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)

include(CPack)
