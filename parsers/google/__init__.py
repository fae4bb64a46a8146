"""Google's two inventory feeds: Merchant Center products and local (per-store) inventory.

Both are feeds whose items carry Google attributes in the ``g`` namespace
(``http://base.google.com/ns/1.0``): RSS 2.0 for both, and Atom 1.0 for products too. They share
the feed scan (``rss``: the shared front end filtered to the root and item tags of the shapes a
feed reads, and which Google feed a head is) and the item reading (``items``), and differ in what
an item means: one product (``merchant``) or one product in one store, grouped per product
(``local``, which groups through a row spill it is given, ``row_spill``).
"""
