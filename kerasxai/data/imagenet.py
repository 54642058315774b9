"""ImageNet's 1000 class names, shipped with kerasxai: no download, ever.

``imagenet_class_index.json`` beside this module has the same content and
format as the ``imagenet_class_index.json`` that Keras's
``decode_predictions`` downloads: ``{"0": ["n01440764", "tench"], ...,
"999": ["n15075141", "toilet_tissue"]}`` — the ILSVRC-2012 WordNet ids in
sorted order (the class order of every ``keras.applications`` model) with
the first lemma of each synset, spaces written as underscores.

Where it comes from, and under which licences:

- the 1000 WordNet ids in class order: ``timm/data/_info/imagenet_synsets.txt``
  of the ``timm`` package on PyPI (version 1.0.31; Apache License 2.0);
- the names: the first lemma of each synset in WordNet 3.0, as listed in
  ``timm/data/_info/imagenet_synset_to_lemma.txt`` of the same package, and
  checked against ``data.noun`` of Debian's ``wordnet-base`` 3.0 (all 1000
  agree). WordNet's licence asks that this notice travel with its data::

    WordNet 3.0 Copyright 2006 by Princeton University.  All rights reserved.

    Permission to use, copy, modify and distribute this software and
    database and its documentation for any purpose and without fee or
    royalty is hereby granted, provided that you agree to comply with the
    following copyright notice and statements, including the disclaimer,
    and that the same appear on ALL copies of the software, database and
    documentation, including modifications that you make for internal use
    or for distribution.

    THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON
    UNIVERSITY MAKES NO REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED.
    BY WAY OF EXAMPLE, BUT NOT LIMITATION, PRINCETON UNIVERSITY MAKES NO
    REPRESENTATIONS OR WARRANTIES OF MERCHANTABILITY OR FITNESS FOR ANY
    PARTICULAR PURPOSE OR THAT THE USE OF THE LICENSED SOFTWARE, DATABASE
    OR DOCUMENTATION WILL NOT INFRINGE ANY THIRD PARTY PATENTS,
    COPYRIGHTS, TRADEMARKS OR OTHER RIGHTS.

    The name of Princeton University or Princeton may not be used in
    advertising or publicity pertaining to distribution of the software
    and/or database.  Title to copyright in this software, database and
    any associated documentation shall at all times remain with Princeton
    University and LICENSEE agrees to preserve same.

The file was written by joining those two lists (index ``i`` -> ``[wnid,
first lemma with "_" for " "]``) and compared entry by entry with Keras's own
index: identical.
"""

from __future__ import annotations

import functools
import json
import os

INDEX_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_class_index.json")


@functools.lru_cache(maxsize=1)
def class_index() -> dict:
    """The shipped index: ``{"0": ["n01440764", "tench"], ...}`` (Keras's format), read once.

    Examples:
        >>> class_index()["281"]
        ['n02123045', 'tabby']
    """
    with open(INDEX_FILE, encoding="utf-8") as fh:
        index = json.load(fh)
    if len(index) != 1000:  # a truncated install: say so rather than name classes wrongly
        raise RuntimeError(f"{INDEX_FILE} has {len(index)} classes instead of 1000; reinstall kerasxai.")
    return index


def class_names() -> list:
    """The 1000 ImageNet class names in class order (``class_names()[281] == "tabby"``).

    Examples:
        >>> names = class_names()
        >>> len(names), names[0], names[999]
        (1000, 'tench', 'toilet_tissue')
    """
    index = class_index()
    return [index[str(i)][1] for i in range(1000)]


def wnids() -> list:
    """The 1000 WordNet ids in class order (``wnids()[0] == "n01440764"``).

    Examples:
        >>> wnids()[281]
        'n02123045'
    """
    index = class_index()
    return [index[str(i)][0] for i in range(1000)]
