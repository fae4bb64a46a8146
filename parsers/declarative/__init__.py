"""Declarative XPath formats: a partner in a new XML shape is onboarded by configuration alone.

A format is described under ``formats:`` in partners.yaml (``spec``: the root element, the
child-step path to each record, and one XPath per contract field, with a few ``transforms`` and an
optional value map). Everything that can be checked without a file is checked when the
configuration loads (``compiler``: XPath syntax, namespace prefixes, transforms, map values,
defaults), so a mistake fails the deployment, not the partner's first drop. ``parser`` streams a
document through the shared front end, and ``reader`` reads one record by the compiled rules.

XPath 1.0 rule worth knowing: an unprefixed name means "no namespace". When the partner's document
uses a default namespace (``xmlns="urn:…"``), declare a prefix for it under ``namespaces`` and use
it in every path.
"""
