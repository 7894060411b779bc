#!/usr/bin/env bash
# The "Use from C" program of README.md compiles as strict C99 against the shared library and runs.
# usage: readme_c.sh <README.md> <C compiler> <include dir> <dir of libmsa.so> <msa CLI> <tokenizer dir> <work dir>
set -euo pipefail
readme=$1 cc=$2 inc=$3 libdir=$4 cli=$5 tokdir=$6 work=$7
mkdir -p "$work"
awk '/^## Use from C$/ {s=1; next} s && /^```c$/ {c=1; next} c && /^```$/ {exit} c {print}' "$readme" \
  >"$work/readme_app.c"
lines=$(wc -l <"$work/readme_app.c")
((lines > 10)) || { echo "no C program found under '## Use from C' in $readme" >&2; exit 1; }
echo "README program: $lines lines"
# shellcheck disable=SC2086  # MSA_EXTRA_CFLAGS: the sanitizer build's flags, word-split on purpose
"$cc" -std=c99 -Wall -Wextra -pedantic -Werror ${MSA_EXTRA_CFLAGS:-} "$work/readme_app.c" -I"$inc" -L"$libdir" -lmsa \
  -Wl,-rpath,"$libdir" -o "$work/readme_app"
[[ -f "$work/readme_model/model.safetensors" ]] ||
  "$cli" init-model --preset micro --seed 2 --tokenizer "$tokdir" --out "$work/readme_model" >/dev/null
"$work/readme_app" "$work/readme_model" | tee "$work/readme_app.out"
grep -q '^answer: ' "$work/readme_app.out"
