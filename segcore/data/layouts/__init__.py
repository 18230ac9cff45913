"""Dataset layouts on disk, chosen by name.

Each layout turns a root folder into a list of :class:`SampleRecord`. The
registry ``LAYOUTS`` maps a name to its reader; :func:`get_layout` raises an
error listing the valid names for an unknown one.
"""

from __future__ import annotations

from segcore.data.errors import DataError
from segcore.data.layouts.base import Layout
from segcore.data.layouts.dermatomyositis import DermatomyositisLayout
from segcore.data.layouts.dermofit import DermofitLayout
from segcore.data.layouts.folder import FolderLayout
from segcore.data.layouts.isic2017 import Isic2017Layout
from segcore.data.layouts.synthetic import SyntheticLayout

LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        FolderLayout(),
        Isic2017Layout(),
        DermofitLayout(),
        SyntheticLayout(),
        DermatomyositisLayout(),
    )
}


def get_layout(name: str) -> Layout:
    """Return the layout registered as ``name``."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise DataError(f"unknown layout {name!r}; valid layouts: {', '.join(LAYOUTS)}") from None


__all__ = ["LAYOUTS", "Layout", "get_layout"]
