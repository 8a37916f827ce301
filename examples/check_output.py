#!/usr/bin/env python3
# Runs PROGRAM and compares its standard output with EXPECTED, byte for byte.
# Usage: check_output.py EXPECTED PROGRAM [ARGS...]
import subprocess, sys

want = open(sys.argv[1]).read()
run = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=60)
sys.stderr.write(run.stderr)
if run.returncode != 0:
    sys.exit(f'{sys.argv[2]} exited with {run.returncode}')
if run.stdout != want:
    sys.exit(f'{sys.argv[2]}: output differs\n--- expected\n{want}--- got\n{run.stdout}')
print(run.stdout, end='')
