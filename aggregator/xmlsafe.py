"""One libxml2 parser configuration for strangers' XML (feeds, OPML files).

No entity substitution, no DTD loading or validation, no network, libxml2's default limits on depth and text
size (huge_tree off), no recovery, comments and processing instructions dropped.
"""

from __future__ import annotations

from lxml import etree

__all__ = ["safe_parser"]


def safe_parser() -> etree.XMLParser:
    """A new parser for untrusted XML (a parser is not thread-safe, so each user keeps its own)."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        recover=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )
