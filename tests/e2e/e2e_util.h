/* Shared by the C99 end-to-end tests: a failure counter and CHECK, which prints the failed condition with
 * msa_last_error() and counts it (main returns non-zero when failures > 0). Strict C99. */
#ifndef MSA_TESTS_E2E_UTIL_H
#define MSA_TESTS_E2E_UTIL_H

#include <msa/msa.h>

#include <stdio.h>

static int failures = 0;
#define CHECK(cond)                                                                                        \
  do {                                                                                                     \
    if (!(cond)) {                                                                                         \
      fprintf(stderr, "%s:%d: CHECK failed: %s (last error: %s)\n", __FILE__, __LINE__, #cond,            \
              msa_last_error());                                                                           \
      failures++;                                                                                          \
    }                                                                                                      \
  } while (0)

#endif /* MSA_TESTS_E2E_UTIL_H */
