"""Block registry and block families.

Importing this package registers every family; blocks from installed plugin packages
(entry point ``archsearch.blocks``, see :mod:`blocks.plugins`) join when the registry is
first used. Specs reach blocks by these names only.

>>> import blocks
>>> blocks.names()[:3]                       # doctest: +SKIP
>>> blocks.get("conv").params               # the pydantic parameter model
"""
from blocks.core import (ADAPTERS, BLOCKS, DOMAINS, BlockEntry, BlockParams, NoParams,
                         RegistryError, TensorSpec, adapter_hint, build_block, get_block,
                         register_block)

# Families register themselves on import; the order does not matter.
from blocks import io  # noqa: F401,E402
from blocks import spatial  # noqa: F401,E402
from blocks import adapters  # noqa: F401,E402
from blocks import time  # noqa: F401,E402
from blocks import unet  # noqa: F401,E402
from blocks import complex  # noqa: F401,E402
from blocks import dual  # noqa: F401,E402
from blocks import twins  # noqa: F401,E402  (registers the complex and dual blocks)
from blocks import spectral  # noqa: F401,E402
from blocks import attention  # noqa: F401,E402
from blocks import heads  # noqa: F401,E402
from blocks import resample  # noqa: F401,E402
from blocks.plugins import PluginError, load_plugins  # noqa: E402

# Third-party blocks (entry point ``archsearch.blocks``) join on the registry's first use.
BLOCKS.when_first_used(load_plugins)


def names() -> list[str]:
    """All registered block names, sorted."""
    return BLOCKS.names()


get = get_block
build = build_block

__all__ = [
    "ADAPTERS", "BLOCKS", "DOMAINS", "BlockEntry", "BlockParams", "NoParams", "PluginError",
    "RegistryError", "load_plugins",
    "TensorSpec", "adapter_hint", "build", "build_block", "get", "get_block", "names",
    "register_block",
]
