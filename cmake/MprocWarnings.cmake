# The project's own targets build with every common warning as an error.
function(mproc_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror
    # GCC 12 at -O2 reports -Wrestrict inside std::string's operator+ where nothing overlaps
    # (GCC bug 105329, fixed in 13); the warning says nothing about our code there.
    $<$<AND:$<CXX_COMPILER_ID:GNU>,$<VERSION_LESS:$<CXX_COMPILER_VERSION>,13>>:-Wno-restrict>)
endfunction()
