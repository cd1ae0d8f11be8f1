#!/usr/bin/env python3
"""Replace the text between <!-- BEGIN name --> and <!-- END name --> in a
Markdown file with a fenced block holding the content of another file."""
import sys

path, name, source = sys.argv[1:4]
begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
doc = open(path).read()
head, rest = doc.split(begin, 1)
_, tail = rest.split(end, 1)
body = open(source).read().rstrip("\n")
open(path, "w").write(f"{head}{begin}\n```toml\n{body}\n```\n{end}{tail}")
