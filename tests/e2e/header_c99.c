/* Compiled with -std=c99 -Wall -Wextra -pedantic -Werror: the public header must be plain C99. */
#include <msa/msa.h>

int msa_header_c99_probe(void);
int msa_header_c99_probe(void) { return (int)MSA_OK + MSA_VERSION_MAJOR; }
