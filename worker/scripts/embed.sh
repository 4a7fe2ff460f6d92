#!/bin/sh
# embed.sh OUT.c SCRIPT.lua...: the worker's Lua scripts as C strings, one
# "const char ragq_script_NAME[]" per file (NAME: the file name without
# .lua), declared in worker/scripts.h.  Comment lines ("--" first) and blank
# lines are left out: the text goes over the wire with every SCRIPT LOAD
# (and every EVAL after a NOSCRIPT), and Valkey hashes it.  Backslashes and
# double quotes are escaped; nothing else needs it in a C string.
set -eu
out=$1
shift
tmp=$out.tmp.$$
trap 'rm -f "$tmp"' EXIT
{
    echo "/* Generated from $* by worker/scripts/embed.sh; do not edit. */"
    echo
    echo '#include "scripts.h"'
    for f in "$@"; do
        name=$(basename "$f" .lua)
        case $name in
        *[!a-z0-9_]* | '')
            echo "embed.sh: $f: the name must be [a-z0-9_]" >&2
            exit 1
            ;;
        esac
        echo
        echo "const char ragq_script_$name[] ="
        sed -e '/^[[:space:]]*--/d' -e '/^[[:space:]]*$/d' \
            -e 's/\\/\\\\/g' -e 's/"/\\"/g' \
            -e 's/^/    "/' -e 's/$/\\n"/' "$f"
        echo "    ;"
    done
} >"$tmp"
mv "$tmp" "$out"
