# Warnings as errors for the project's own code (not for dependencies' headers, which are SYSTEM).
# -Werror applies with GCC, the compiler of the release and sanitizer builds; the clang build (libFuzzer
# targets) shows its warnings without failing on a warning class GCC does not have.
function(msa_set_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic $<$<CXX_COMPILER_ID:GNU>:-Werror> -Wno-error=deprecated-declarations>
    $<$<COMPILE_LANGUAGE:C>:-Wall -Wextra -Wpedantic $<$<C_COMPILER_ID:GNU>:-Werror>>)
  if(MSA_SANITIZE AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    # GCC's flow analysis reports false maybe-uninitialized warnings inside <regex>/<functional> when ASan
    # instruments the code; keep them visible but not fatal in the sanitizer build only.
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wno-error=maybe-uninitialized>)
  endif()
endfunction()
