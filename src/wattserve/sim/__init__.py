"""Trace simulation of the response cache and the model multiplexer, per-(query, model) costs."""

from wattserve.sim.batched import simulate_lanes
from wattserve.sim.selectors import Selector, parse_selector
from wattserve.sim.sequential import simulate_sequential
from wattserve.sim.trace import Scenario, load_trace, power_trace, zhu_scenario
from wattserve.sim.zhu import ZhuConfig, run_zhu, summarise

__all__ = [
    "simulate_lanes",
    "simulate_sequential",
    "Selector",
    "parse_selector",
    "Scenario",
    "load_trace",
    "power_trace",
    "zhu_scenario",
    "ZhuConfig",
    "run_zhu",
    "summarise",
]
