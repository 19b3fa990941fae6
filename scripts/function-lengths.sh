#!/usr/bin/env bash
# Lists the longest Swift functions (func, init, deinit, subscript) and the longest files of the
# hand-written sources, so that a function or file growing past the size a reader can hold in mind
# is noticed. Generated code (Sources/PSWireC) is left out.
#
#   scripts/function-lengths.sh [-n N] [-t LINES] [PATH...]
#     -n N      how many functions and files to list (default 15)
#     -t LINES  instead, list every function longer than LINES lines and exit 1 if there is one
#     PATH      folders or files to scan (default: Sources)
#
# A function's length counts every line from its `func`/`init` keyword to its closing brace,
# signature, comments and blank lines included. Braces inside strings and comments are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

count=15
threshold=""
while getopts "n:t:h" opt; do
    case "$opt" in
        n) count="$OPTARG" ;;
        t) threshold="$OPTARG" ;;
        *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ "$#" -gt 0 ] || set -- Sources

exec python3 - "$count" "$threshold" "$@" <<'PYTHON'
import os
import re
import sys

count = int(sys.argv[1])
threshold = int(sys.argv[2]) if sys.argv[2] else None
roots = sys.argv[3:]
EXCLUDED = (os.path.join("Sources", "PSWireC") + os.sep,)


def swift_files():
    for root in roots:
        if os.path.isfile(root):
            yield root
            continue
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                path = os.path.join(folder, name)
                if name.endswith(".swift") and not (path + os.sep).startswith(EXCLUDED) \
                        and not path.startswith(EXCLUDED):
                    yield path


def mask(text):
    """The text with the contents of comments and string literals replaced by spaces (newlines kept),
    so that braces and keywords can be found by plain scanning."""
    out = list(text)
    i, n = 0, len(text)
    # Stack of open contexts: ("code", paren depth) inside an interpolation, or ("string", hashes, multiline).
    stack = []

    def blank(a, b):
        for k in range(a, b):
            if out[k] != "\n":
                out[k] = " "

    while i < n:
        top = stack[-1] if stack else None
        if top is not None and top[0] == "string":
            _, hashes, multiline = top
            close = ('"""' if multiline else '"') + "#" * hashes
            if text.startswith(close, i):
                stack.pop()
                i += len(close)
                continue
            if text[i] == "\\" and text.startswith("#" * hashes, i + 1):
                j = i + 1 + hashes
                if j < n and text[j] == "(":
                    blank(i, j)
                    stack.append(["code", 1])
                    i = j + 1
                    continue
                blank(i, min(j + 1, n))
                i = j + 1
                continue
            if text[i] != "\n":
                out[i] = " "
            i += 1
            continue
        # Code, at top level or inside an interpolation.
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
            continue
        if text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
            continue
        m = re.match(r'(#*)("""|")', text[i:i + 64])
        if m and (m.group(1) == "" or c == "#"):
            hashes = len(m.group(1))
            stack.append(("string", hashes, m.group(2) == '"""'))
            i += m.end()
            continue
        if top is not None and top[0] == "code":
            if c == "(":
                top[1] += 1
            elif c == ")":
                top[1] -= 1
                if top[1] == 0:
                    stack.pop()
        i += 1
    return "".join(out)


DECLARATION = re.compile(r"\b(func\s+([^\s(<]+)|init[?!]?\s*[(<]|deinit\b|subscript\s*[(<])")
# What the first word of a line after a signature can be when the function has no body (a protocol
# requirement): the next declaration, an attribute, a modifier, a directive or the end of the type.
NEXT_LINE = re.compile(r"\s*(\}|@|#|(func|var|let|case|init|deinit|subscript|struct|class|enum|protocol|"
                       r"extension|typealias|associatedtype|import|public|private|fileprivate|internal|"
                       r"open|static|mutating|nonmutating|override|final|convenience|required|nonisolated)\b)")


def functions(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    code = mask(text)
    line_starts = [0]
    for k, ch in enumerate(code):
        if ch == "\n":
            line_starts.append(k + 1)

    def line_of(offset):
        lo, hi = 0, len(line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    results = []
    for m in DECLARATION.finditer(code):
        start = m.start()
        if m.group(2):
            name = m.group(2)
        else:
            name = m.group(1).rstrip("(<").strip()
        # Find the body's opening brace: the first `{` outside parentheses and brackets.
        depth, j, body = 0, m.end(), None
        if m.group(1).endswith(("(", "<")):
            j -= 1
        while j < len(code):
            ch = code[j]
            if ch in "([":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif depth == 0 and ch == "{":
                body = j
                break
            elif depth == 0 and ch == "}":
                break
            elif depth == 0 and ch == "\n" and NEXT_LINE.match(code, j + 1):
                break
            j += 1
        if body is None:
            continue
        level, k = 0, body
        while k < len(code):
            if code[k] == "{":
                level += 1
            elif code[k] == "}":
                level -= 1
                if level == 0:
                    break
            k += 1
        first, last = line_of(start), line_of(k)
        results.append((last - first + 1, path, first, name))
    return results, text.count("\n") + (0 if text.endswith("\n") or not text else 1)


all_functions, all_files = [], []
for path in swift_files():
    found, lines = functions(path)
    all_functions.extend(found)
    all_files.append((lines, path))
all_functions.sort(key=lambda r: (-r[0], r[1], r[2]))
all_files.sort(key=lambda r: (-r[0], r[1]))

if threshold is not None:
    over = [r for r in all_functions if r[0] > threshold]
    for length, path, line, name in over:
        print(f"{length:5d}  {path}:{line}  {name}")
    sys.exit(1 if over else 0)

print(f"Longest functions ({len(all_functions)} in {len(all_files)} files):")
for length, path, line, name in all_functions[:count]:
    print(f"{length:5d}  {path}:{line}  {name}")
print()
print("Longest files:")
for lines, path in all_files[:count]:
    print(f"{lines:5d}  {path}")
PYTHON
