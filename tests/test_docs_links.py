"""Every relative link in README.md, CHANGELOG.md and docs/**/*.md resolves: the file (or
directory) exists, and a `#fragment` names a heading of the page it points at (GitHub's anchors).

Links inside fenced code blocks and inline code are not links. Absolute URLs are not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target); the target may be <wrapped> and followed by a "title".
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target
_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass(frozen=True)
class Link:
    page: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {self.target}"


def pages(root: Path = ROOT) -> list[Path]:
    found = [root / "README.md", root / "CHANGELOG.md", *sorted((root / "docs").rglob("*.md"))]
    return [p for p in found if p.is_file()]


def _prose_lines(text: str, *, drop_code: bool = True) -> list[tuple[int, str]]:
    """The page's lines outside fenced code blocks (inline code removed, with `drop_code`)."""
    lines = []
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, _INLINE_CODE.sub("", line) if drop_code else line))
    return lines


def links(page: Path) -> list[Link]:
    found = []
    for number, line in _prose_lines(page.read_text(encoding="utf-8")):
        targets = [m.group(1) for m in _LINK.finditer(line)]
        definition = _DEFINITION.match(line)
        if definition:
            targets.append(definition.group(1))
        found += [Link(page, number, t.strip("<>")) for t in targets]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed (but `-`
    and `_`), spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in _prose_lines(page.read_text(encoding="utf-8"), drop_code=False):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken(link: Link) -> str | None:
    """Why `link` does not resolve, or None."""
    if _SCHEME.match(link.target) or link.target.startswith("//"):
        return None
    path_part, _, fragment = link.target.partition("#")
    target = (link.page.parent / path_part).resolve() if path_part else link.page
    if not target.exists():
        return "no such file"
    if fragment and target.suffix == ".md" and fragment not in anchors(target):
        return f"no heading #{fragment} in {target.name}"
    return None


def test_every_relative_link_in_the_docs_resolves() -> None:
    every = [link for page in pages() for link in links(page)]
    relative = [link for link in every if not _SCHEME.match(link.target)]
    # The docs link to each other throughout: finding few links means the parser broke.
    assert len(relative) > 100, f"found only {len(relative)} relative links"
    problems = [f"{link} ({why})" for link in relative if (why := broken(link)) is not None]
    assert problems == []


def test_the_check_finds_a_missing_page_and_a_missing_heading(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# Top\n\n[ok](docs/a.md#the-a-page) [gone](docs/missing.md)\n"
        "`[not a link](nowhere.md)`\n```\n[nor this](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    (tmp_path / "docs" / "a.md").write_text(
        "# The `a` page\n\n[self](#the-a-page) [bad](#no-such-heading) [up](../README.md#top)\n"
        "[web](https://example.com/x.md)\n",
        encoding="utf-8",
    )
    found = {(p.name, link.target): broken(link) for p in pages(tmp_path) for link in links(p)}
    assert found == {
        ("README.md", "docs/a.md#the-a-page"): None,
        ("README.md", "docs/missing.md"): "no such file",
        ("a.md", "#the-a-page"): None,
        ("a.md", "#no-such-heading"): "no heading #no-such-heading in a.md",
        ("a.md", "../README.md#top"): None,
        ("a.md", "https://example.com/x.md"): None,
    }


def test_anchors_follow_githubs_rules() -> None:
    assert slug("Retries, backoff and dead letters") == "retries-backoff-and-dead-letters"
    assert slug("The `stripe-ingest` command") == "the-stripe-ingest-command"
    assert slug("`backfill_runs`, `backfill_events`") == "backfill_runs-backfill_events"
    assert slug("What a 'running' attempt means") == "what-a-running-attempt-means"
