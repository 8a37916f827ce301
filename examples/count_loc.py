#!/usr/bin/env python3
# Lines of code of a C file: non-blank lines that are not only a comment.
# Usage: count_loc.py FILE MAX  -> prints the count, fails when it is > MAX.
import re, sys

text = open(sys.argv[1]).read()
text = re.sub(r'/\*.*?\*/', lambda m: '\n' * m.group(0).count('\n'), text, flags=re.S)
text = re.sub(r'//[^\n]*', '', text)
n = sum(1 for line in text.splitlines() if line.strip())
print(f'{sys.argv[1]}: {n} lines of code (limit {sys.argv[2]})')
sys.exit(0 if n <= int(sys.argv[2]) else 1)
