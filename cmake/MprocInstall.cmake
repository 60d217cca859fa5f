include(CMakePackageConfigHelpers)

install(TARGETS mproc EXPORT mprocTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/mproc DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT mprocTargets NAMESPACE mproc:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mproc)

configure_package_config_file(cmake/mprocConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/mprocConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mproc)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/mprocConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mprocConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/mprocConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/mproc)
