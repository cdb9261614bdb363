"""Energy measurement: meters, windows over their readings, and attribution to requests.

* ``meters``: ``auto_meter(prefer) -> (meter, reason)`` and the meter classes (NVML, RAPL,
  modeled CPU, replay, null, composite); each reads cumulative joules per device.
* ``sampler``: ``EnergySampler`` reads a meter in the background; ``window(name, t0, t1)``
  answers any interval afterwards; ``track(name)`` marks one around a block.
* ``windows``: the pure interpolation, power and row/CSV functions the sampler uses.
* ``attribution``: ``attribute_requests`` / ``attribute_replicas`` split device joules.

Nothing is imported here, so ``import wattserve.energy`` probes no device.
"""
