"""MkDocs hooks: the site's home page is the README and its changelog the CHANGELOG, each kept in
one file at the repository's root, where people who clone it read them."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A page of the site that is a file at the root: its links are written from the root.
FROM_ROOT = {"index.md": "README.md", "changelog.md": "CHANGELOG.md"}


def on_page_markdown(markdown, page, **_):
    source = FROM_ROOT.get(page.file.src_uri)
    if source is None:
        return markdown
    text = (ROOT / source).read_text(encoding="utf-8")
    return text.replace("](docs/", "](").replace("](CHANGELOG.md)", "](changelog.md)")
