# msa_catch_tests(<target> [FULL_RELEASE names...] [FULL_ASAN names...] [CONCURRENCY names...])
# Registers every Catch2 test case of <target> as its own ctest test, discovered after each build of the
# target (cmake/MsaCatchDiscover.cmake), with the tier labels of scripts/test.sh:
#   quick                      every test case not listed below;
#   full;tier_release          FULL_RELEASE names: slow, run by CI in the release build only;
#   full;tier_asan             FULL_ASAN names: slow, run by CI in the ASan build only;
#   quick;concurrency          CONCURRENCY names and the test cases tagged [concurrency] (the TSan tier).
# Used instead of Catch2's catch_discover_tests, whose 2.13 version splits a test case name at every ';'
# into two ctest tests that match no test case and pass without running anything. Here each test runs
# `<target> <name as a test spec> --warn NoTests`, so a name that matches nothing fails.
set(MSA_CATCH_DISCOVER_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/MsaCatchDiscover.cmake)

function(msa_catch_tests target)
  cmake_parse_arguments(ARG "" "" "FULL_RELEASE;FULL_ASAN;CONCURRENCY" ${ARGN})
  set(dir ${CMAKE_CURRENT_BINARY_DIR})
  set(lists_file ${dir}/${target}_tiers.cmake)
  set(tests_file ${dir}/${target}_tests.cmake)
  set(include_file ${dir}/${target}_include.cmake)
  # The tier lists, read by the discovery script (names as bracket arguments: no quoting trouble).
  set(text "")
  foreach(kind FULL_RELEASE FULL_ASAN CONCURRENCY)
    string(APPEND text "set(MSA_TIER_${kind}")
    foreach(name IN LISTS ARG_${kind})
      string(APPEND text "\n  [==[${name}]==]")
    endforeach()
    string(APPEND text ")\n")
  endforeach()
  file(WRITE ${lists_file} "${text}")
  add_custom_command(TARGET ${target} POST_BUILD
    BYPRODUCTS ${tests_file}
    COMMAND ${CMAKE_COMMAND} -D TEST_EXECUTABLE=$<TARGET_FILE:${target}> -D TEST_WORKING_DIR=${dir}
            -D TIERS_FILE=${lists_file} -D CTEST_FILE=${tests_file} -P ${MSA_CATCH_DISCOVER_SCRIPT}
    VERBATIM)
  file(WRITE ${include_file}
    "if(EXISTS \"${tests_file}\")\n  include(\"${tests_file}\")\nelse()\n"
    "  add_test(${target}_NOT_BUILT ${target}_NOT_BUILT)\nendif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${include_file})
endfunction()
