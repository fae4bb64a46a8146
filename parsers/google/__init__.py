"""Google's two RSS inventory feeds: Merchant Center products and local (per-store) inventory.

Both are RSS 2.0 documents whose items carry Google attributes in the ``g`` namespace
(``http://base.google.com/ns/1.0``). They share the RSS scan (``rss``: the shared front end
filtered to ``rss`` and ``item``) and the item reading (``items``), and differ in what an item
means: one product (``merchant``) or one product in one store, grouped per product (``local``,
which groups through a row spill it is given, ``row_spill``).
"""
