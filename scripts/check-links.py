#!/usr/bin/env python3
"""Checks that every relative link of the README and of docs/*.md resolves: the file exists and,
for a link with #anchor, the target has a heading with that GitHub anchor. External links are
not fetched (CI has no network to spare). Exits 1 naming each broken link."""

import re
import sys
from pathlib import Path

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(path):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found, fence = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
        if fence or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def main():
    root = Path(__file__).resolve().parent.parent
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text, fence = [], False
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith("```"):
                fence = not fence
            elif not fence:
                text.append(line)
        for target in LINK.findall("\n".join(text)):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(root)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                broken.append(f"{page.relative_to(root)}: {target} (no such heading)")
    for line in broken:
        print(f"check-links: {line}", file=sys.stderr)
    print(f"check-links: {len(pages)} pages, {'no broken link' if not broken else f'{len(broken)} broken'}",
          file=sys.stderr)
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
