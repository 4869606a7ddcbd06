"""File names as the file systems that ignore case compare them (macOS, Windows, exFAT cards)."""

import unicodedata


def folded(name: str) -> str:
    """The form under which two names are one file there: case folded, accents composed (NFC)."""
    return unicodedata.normalize("NFC", name.casefold())
