"""The README is a short front page and every relative link in it and in docs/ resolves."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
MAX_README_LINES = 300

#: `[text](target)` and `![alt](target)`; the target ends at the first space or `)`.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _prose(text):
    """The text outside fenced code blocks (links in code are not links)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def github_anchor(heading):
    """GitHub's anchor of a heading: lowercase, drop punctuation but '-' and '_', spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    headings = re.findall(r"^#{1,6} (.+?)\s*#*$", _prose(path.read_text(encoding="utf-8")), re.M)
    seen, result = {}, set()
    for heading in headings:
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        result.add(anchor if count == 0 else f"{anchor}-{count}")
    return result


def relative_links(path):
    for target in LINK.findall(_prose(path.read_text(encoding="utf-8"))):
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            yield target


def test_github_anchor_rules():
    assert github_anchor("bf16 on CPU (`--precision auto`)") == "bf16-on-cpu---precision-auto"
    assert github_anchor('The shipped CIFAR-10 model (`weights="cifar10"`)') == (
        "the-shipped-cifar-10-model-weightscifar10")
    assert github_anchor("Time to accuracy (`python -m benchmarks.time_to_accuracy`)") == (
        "time-to-accuracy-python--m-benchmarkstime_to_accuracy")


def test_readme_is_a_short_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_every_relative_link_resolves():
    broken = []
    for page in [README, *DOCS]:
        for target in relative_links(page):
            file_part, _, anchor = target.partition("#")
            destination = (page.parent / file_part).resolve() if file_part else page
            where = f"{page.relative_to(REPO)}: {target}"
            if not destination.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                broken.append(f"{where} (no heading with that anchor)")
    assert not broken, "\n".join(broken)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(REPO / t.partition("#")[0]).resolve() for t in relative_links(README)}
    orphans = [p.name for p in DOCS if p.resolve() not in linked]
    assert DOCS and not orphans, f"docs pages the README does not link: {orphans}"
