#!/usr/bin/env bash
# Regenerates the ABI baseline (tests/abi/symbols.txt, tests/abi/libmsa.abi) from a fresh build of
# libmsa.so after an intentional ABI change (a new function, a field appended to a size-tagged struct),
# then runs the check against it. One command; review `git diff tests/abi` and commit.
# usage: scripts/update_abi.sh [BUILD_DIR]   (default: $MSA_BUILD_DIR, else build/release; configured
#                                             without CUDA when missing)
exec "$(dirname "${BASH_SOURCE[0]}")/check_abi.sh" --update "$@"
