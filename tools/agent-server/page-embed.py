#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""page-embed.py - page.html -> page.h, the page as one C string.

    page-embed.py page.html page.h          write page.h
    page-embed.py --check page.html page.h  exit 1 if page.h is not what
                                            page.html makes (meson test
                                            page_html_embedded)

page.h is committed, so building the server needs no generator; this
script and its test keep it in step with page.html.  The page must be
ASCII (use HTML entities or JS \\u escapes).
"""
import sys

HEAD = """/* SPDX-License-Identifier: MIT */
/* GENERATED from page.html by page-embed.py: edit page.html, then run
 *   tools/agent-server/page-embed.py tools/agent-server/page.html tools/agent-server/page.h
 * The page served at "/" (see page.html for what it shows). */
#ifndef UREG_AGENT_PAGE_H
#define UREG_AGENT_PAGE_H
static const char agent_page_html[] =
"""
TAIL = """;
#endif
"""


def c_line(line):
    out = []
    prev = ""
    for ch in line:
        if ch == "\\" or ch == '"':
            out.append("\\" + ch)
        elif ch == "?" and prev == "?":
            out.append("\\?")  # no trigraphs under -std=c11
        else:
            out.append(ch)
        prev = ch
    return '"' + "".join(out) + '\\n"'


def render(html):
    for i, ch in enumerate(html):
        if ord(ch) > 0x7E or (ord(ch) < 0x20 and ch != "\n"):
            line = html.count("\n", 0, i) + 1
            raise SystemExit(f"page-embed.py: page.html line {line}: non-ASCII or "
                             f"control character {ch!r}; use an entity or a \\u escape")
    lines = html.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return HEAD + "\n".join(c_line(l) for l in lines) + TAIL


def main(argv):
    check = argv[:1] == ["--check"]
    if check:
        argv = argv[1:]
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], encoding="ascii") as f:
        want = render(f.read())
    if check:
        try:
            with open(argv[1], encoding="ascii") as f:
                have = f.read()
        except OSError as e:
            have = None
            print(f"page-embed.py: {e}", file=sys.stderr)
        if have != want:
            print(f"page-embed.py: {argv[1]} is out of date: run "
                  f"tools/agent-server/page-embed.py {argv[0]} {argv[1]}", file=sys.stderr)
            return 1
        print(f"{argv[1]} matches {argv[0]}")
        return 0
    with open(argv[1], "w", encoding="ascii") as f:
        f.write(want)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
