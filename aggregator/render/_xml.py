"""The lxml helpers of the XML formats (Atom, RSS, OPML): the only place the render package imports lxml.

Every text and attribute passes `strip_invalid_xml`, so a control character in a feed title can never make
an output that XML parsers refuse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

from lxml import etree

from ..normalize import strip_invalid_xml

__all__ = ["Element", "root", "sub", "to_bytes"]

Element: TypeAlias = etree._Element


def root(tag: str, nsmap: dict[str | None, str] | None = None, **attributes: str) -> Element:
    """A document's root element."""
    return etree.Element(tag, _clean(attributes), nsmap=nsmap)


def sub(parent: Element, tag: str, text: str | None = None, /, **attributes: str | None) -> Element:
    """Append a child element with optional text; attributes whose value is None are left out."""
    element = etree.SubElement(parent, tag, _clean(attributes))
    if text is not None:
        element.text = strip_invalid_xml(text)
    return element


def to_bytes(document: Element) -> bytes:
    """The serialized document: UTF-8, with an XML declaration, indented, ending in a newline."""
    return bytes(etree.tostring(document, xml_declaration=True, encoding="utf-8", pretty_print=True))


def _clean(attributes: Mapping[str, str | None]) -> dict[str, str]:
    return {name: strip_invalid_xml(value) for name, value in attributes.items() if value is not None}
