"""ropekit for Hugging Face transformers models: per-instance patching, KV-cache re-rotation, layout conversion.

Importing this subpackage does not import transformers; the functions that need it import it when called.
"""

from ropekit.hf.cache import rerotate_cache_
from ropekit.hf.patch import RopekitRotary, find_rotary_modules, is_patched, patch, unpatch

__all__ = ["RopekitRotary", "find_rotary_modules", "is_patched", "patch", "rerotate_cache_", "unpatch"]
