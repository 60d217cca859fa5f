include(CMakePackageConfigHelpers)

# Everything a user builds against is in the component "development", which the .deb holds
# (cmake/MprocPackage.cmake); the examples' programs are not in it.
install(TARGETS mproc EXPORT mprocTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT development)
install(DIRECTORY include/mproc DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT development)
install(EXPORT mprocTargets NAMESPACE mproc:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mproc
  COMPONENT development)

configure_package_config_file(cmake/mprocConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/mprocConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mproc)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/mprocConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mprocConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/mprocConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mproc COMPONENT development)

# mproc.pc, for pkg-config. Its prefix is found from the file's own place (${pcfiledir}), so
# that an install moved elsewhere (`cmake --install --prefix`, a .deb unpacked under another
# root) still points at itself; install directories given as absolute paths stay as they are.
set(MPROC_PC_DIR ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
if(IS_ABSOLUTE "${MPROC_PC_DIR}" OR IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(MPROC_PC_PREFIX ${CMAKE_INSTALL_PREFIX})
  set(MPROC_PC_INCLUDEDIR ${CMAKE_INSTALL_FULL_INCLUDEDIR})
  set(MPROC_PC_LIBDIR ${CMAKE_INSTALL_FULL_LIBDIR})
else()
  file(RELATIVE_PATH prefix_from_pc_dir /${MPROC_PC_DIR} /)
  string(REGEX REPLACE "/$" "" prefix_from_pc_dir "${prefix_from_pc_dir}")
  set(MPROC_PC_PREFIX "\${pcfiledir}/${prefix_from_pc_dir}")
  set(MPROC_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
  set(MPROC_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
set(MPROC_PC_DL_LIBS "")
foreach(lib IN LISTS CMAKE_DL_LIBS)
  string(APPEND MPROC_PC_DL_LIBS " -l${lib}")
endforeach()
string(STRIP "${MPROC_PC_DL_LIBS}" MPROC_PC_DL_LIBS)
configure_file(cmake/mproc.pc.in ${CMAKE_CURRENT_BINARY_DIR}/mproc.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mproc.pc DESTINATION ${MPROC_PC_DIR}
  COMPONENT development)
