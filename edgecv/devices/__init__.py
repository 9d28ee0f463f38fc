"""Device profiles and offline prediction of latency and memory on devices that are not attached.

``load_profile("rpi4")`` reads ``device_profiles/rpi4.toml``; ``predict_profile(static, "rpi4")`` prices a
statically analysed model on it (see ``edgecv.devices.model`` for the formula). Nothing here imports
TensorFlow; fitting (``edgecv.devices.fit``) needs numpy and scipy.
"""

from __future__ import annotations

from edgecv.devices.profile import DeviceProfile, ProfileError, device_ids, load_all, load_profile
from edgecv.lazy import lazy_attributes

__all__ = ["DeviceProfile", "ProfileError", "device_ids", "load_all", "load_profile", "predict_profile"]

__getattr__ = lazy_attributes(__name__, {"predict_profile": "edgecv.devices.predict"})
