#!/usr/bin/env python3
"""tests/install/exports.py LIB... - the dynamic symbols each library
defines are exactly public API: every one starts with ureg_ and is
declared with UREG_API in an installed header (include/ureg/*.h).  A
private helper, a test hook of a release build or a leaked static would
fail here.  Exit 0 when clean, 1 with the offending names otherwise."""
import glob
import os
import re
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
headers = glob.glob(os.path.join(here, '..', '..', 'include', 'ureg', '*.h'))
declared = set()
for h in headers:
    text = open(h).read()
    # UREG_API <type> name(   or   extern UREG_API <type> name;
    for m in re.finditer(r'UREG_API\b[^;(]*?\b(ureg_\w+)\s*[(;\[]', text):
        declared.add(m.group(1))
    for m in re.finditer(r'UREG_API __thread [^;]*?\b(ureg__\w+)\s*$', text, re.M):
        declared.add(m.group(1))

bad = []
total = 0
for lib in sys.argv[1:]:
    out = subprocess.run(['nm', '-D', '--defined-only', lib], check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        name = parts[2].split('@')[0]
        if name.startswith('__odr_asan.'):
            continue  # AddressSanitizer's ODR indicators (sanitizer builds only)
        total += 1
        if not name.startswith('ureg_') or name not in declared:
            bad.append(f'{os.path.basename(lib)}: {name} ({parts[1]})')
if bad:
    print('exported but not public API:\n  ' + '\n  '.join(bad))
    sys.exit(1)
if total == 0:
    print('no symbols read: wrong path?')
    sys.exit(1)
print(f'{total} exported symbols, all declared UREG_API in include/ureg/')
