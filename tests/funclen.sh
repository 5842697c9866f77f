#!/bin/bash
# funclen.sh - every function in src/ longer than MAX lines (default 80),
# counted from its opening brace to its closing brace. A long function passes
# when the comment just above it gives the reason and says "kept as one"
# or "long on purpose"
# (e.g. "One case per option type, as a table would read: kept as one
# switch."). TAP output (run by tests/run.sh and make lint): a "# file:line:
# name N lines" line for each long function, "NO REASON" on those without
# one, then one ok / not ok; exit 1 if there is one without a reason.
# A second check: no source file (src/*/*.c, *.h) over 1000 lines.
# -a: list every function with its length instead (longest first).
# Assumes the codebase's style: a function's opening brace alone in column 0.
set -u
cd "$(dirname "$0")/.." || exit 2
max=80 all=0
while getopts "am:" o; do
    case $o in a) all=1 ;; m) max=$OPTARG ;; *) exit 2 ;; esac
done
awk -v max="$max" -v all="$all" '
FNR == 1 { sig = ""; sigline = 0; comment = ""; incomment = 0; body = 0 }
body {
    if ($0 ~ /^}/) {
        n = FNR - open + 1
        if (all)
            printf "%d %s:%d: %s\n", n, FILENAME, sigline, name
        else if (n > max) {
            ok = tolower(comment) ~ /kept as one|long on purpose/
            printf "# %s:%d: %s %d lines%s\n", FILENAME, sigline, name, n, ok ? "" : " NO REASON"
            if (!ok) bad = 1
        }
        body = 0; sig = ""; comment = ""
    }
    next
}
/^\/\*/ { comment = ""; incomment = 1 }
incomment { comment = comment " " $0; if ($0 ~ /\*\//) incomment = 0; sig = ""; next }
/^{/ && sig != "" {
    s = sig; sub(/\(.*/, "", s); k = split(s, w, /[ \t*]+/); name = w[k]
    body = 1; open = FNR
    next
}
/^[ \t]*$/ { sig = ""; comment = ""; next }
/^[A-Za-z_]/ && $0 !~ /;[ \t]*$/ { if (sig == "") sigline = FNR; sig = sig " " $0; next }
sig != "" && /^[ \t]/ { sig = sig " " $0; next }
{ sig = ""; if ($0 !~ /^#/) comment = "" }
END { exit bad }
' src/*/*.c > "${TMPDIR:-/tmp}/funclen.$$"
rc=$?
if [ "$all" = 1 ]; then
    sort -rn "${TMPDIR:-/tmp}/funclen.$$"
else
    echo "1..2"
    cat "${TMPDIR:-/tmp}/funclen.$$"
    [ "$rc" = 0 ] && echo "ok 1 - no function over $max lines without a reason above it" ||
        echo "not ok 1 - functions over $max lines without a reason (split them, or say why above them: kept as one ...)"
    big=$(wc -l src/*/*.c src/*/*.h include/drd/*/*.h | awk '$2 != "total" && $1 > 1000 { print $2 " " $1 }')
    if [ -z "$big" ]; then
        echo "ok 2 - no source file over 1000 lines"
    else
        echo "$big" | sed 's/^/# /'
        echo "not ok 2 - source files over 1000 lines (split them by concern)"
        rc=1
    fi
fi
rm -f "${TMPDIR:-/tmp}/funclen.$$"
exit "$rc"
