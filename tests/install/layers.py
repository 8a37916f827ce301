#!/usr/bin/env python3
"""tests/install/layers.py - lib/'s folders depend one way.

libureg is lib/core + lib/ctx; libureg-config is lib/config; libureg-agents
is lib/agents.  Imports run agents -> config -> core/ctx: core and ctx
include nothing from config or agents (nor lib/layer.h, the upper layers'
helpers), config nothing from agents, and config and agents nothing
private of core or ctx (they link libureg like any application and use
its installed headers).  Also: no file in lib/ is over 700 lines.
Exit 0 when clean, 1 listing every violation."""
import os
import re
import sys

top = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
lib = os.path.normpath(os.path.join(top, 'lib'))
allowed = {  # folder -> folders (or lib-level headers) it may include from
    'core': {'core'},
    'ctx': {'ctx', 'core'},
    'config': {'config', 'layer.h'},
    'agents': {'agents', 'layer.h'},
}
public_ok = {  # installed headers a layer may not include
    'core': ('ureg/config.h', 'ureg/registries.h'),
    'ctx': ('ureg/config.h', 'ureg/registries.h'),
    'config': ('ureg/registries.h',),
    'agents': (),
}
bad = []
files = 0
for folder in sorted(os.listdir(lib)):
    path = os.path.join(lib, folder)
    for root, _, names in os.walk(path) if os.path.isdir(path) else [(lib, [], [folder])]:
        for n in names:
            if not n.endswith(('.c', '.h')):
                continue
            f = os.path.join(root, n)
            rel = os.path.relpath(f, lib)
            layer = rel.split(os.sep)[0] if os.sep in rel else None
            files += 1
            lines = open(f).read().splitlines()
            if len(lines) > 700:
                bad.append(f'lib/{rel}: {len(lines)} lines (limit 700)')
            if layer is None:
                continue
            for i, l in enumerate(lines, 1):
                m = re.match(r'\s*#\s*include\s*([<"])([^>"]+)[>"]', l)
                if not m:
                    continue
                inc = m.group(2)
                if m.group(1) == '<' or inc.startswith('ureg/'):
                    if inc in public_ok[layer]:
                        bad.append(f'lib/{rel}:{i}: {layer} includes {inc}')
                    continue
                target = os.path.normpath(os.path.join(os.path.dirname(f), inc))
                trel = os.path.relpath(target, lib)
                tlayer = trel.split(os.sep)[0]
                if tlayer not in allowed[layer]:
                    bad.append(f'lib/{rel}:{i}: {layer} includes {inc} ({tlayer})')
if bad:
    print('layering violations:\n  ' + '\n  '.join(bad))
    sys.exit(1)
if files < 10:
    print(f'only {files} files read: wrong path?')
    sys.exit(1)
print(f'{files} files in lib/: imports run agents -> config -> core/ctx, none over 700 lines')
