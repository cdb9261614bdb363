"""Energy measurement: meters, windows over their readings, and attribution to requests.

* ``meters``: ``auto_meter(prefer) -> (meter, reason)`` and the meter classes (NVML, RAPL,
  modeled CPU, replay, null, composite); each reads cumulative joules per device.
* ``sampler``: ``EnergySampler`` reads a meter in the background; ``window(name, t0, t1)``
  answers any interval afterwards; ``track(name)`` marks one around a block.
* ``windows``: the pure interpolation, power and row/CSV functions the sampler uses.
* ``attribution``: ``attribute_requests`` / ``attribute_replicas`` split device joules.

Names load lazily (PEP 562), so ``import wattserve.energy`` imports no meter module and
probes no device; ``from wattserve.energy import auto_meter`` imports the meters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wattserve._lazy import lazy_exports

if TYPE_CHECKING:
    from wattserve.energy.attribution import (
        Attribution,
        ReplicaAttribution,
        attribute_replicas,
        attribute_requests,
    )
    from wattserve.energy.errors import MeterError, WindowError
    from wattserve.energy.meters import (
        METER_CHOICES,
        CompositeMeter,
        NullMeter,
        auto_meter,
        meter_info,
    )
    from wattserve.energy.modeled import ModeledCpuMeter, PowerModel
    from wattserve.energy.nvml import NvmlMeter
    from wattserve.energy.rapl import RaplMeter
    from wattserve.energy.replay import ReplayMeter
    from wattserve.energy.sampler import EnergySampler
    from wattserve.energy.windows import measure

__all__ = [
    "METER_CHOICES",
    "Attribution",
    "CompositeMeter",
    "EnergySampler",
    "MeterError",
    "ModeledCpuMeter",
    "NullMeter",
    "NvmlMeter",
    "PowerModel",
    "RaplMeter",
    "ReplayMeter",
    "ReplicaAttribution",
    "WindowError",
    "attribute_replicas",
    "attribute_requests",
    "auto_meter",
    "measure",
    "meter_info",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "wattserve.energy.attribution": (
            "Attribution",
            "ReplicaAttribution",
            "attribute_replicas",
            "attribute_requests",
        ),
        "wattserve.energy.errors": ("MeterError", "WindowError"),
        "wattserve.energy.meters": (
            "METER_CHOICES",
            "CompositeMeter",
            "NullMeter",
            "auto_meter",
            "meter_info",
        ),
        "wattserve.energy.modeled": ("ModeledCpuMeter", "PowerModel"),
        "wattserve.energy.nvml": ("NvmlMeter",),
        "wattserve.energy.rapl": ("RaplMeter",),
        "wattserve.energy.replay": ("ReplayMeter",),
        "wattserve.energy.sampler": ("EnergySampler",),
        "wattserve.energy.windows": ("measure",),
    },
)
