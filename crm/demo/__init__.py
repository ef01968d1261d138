"""Synthetic dealer data for `autoloyal demo` and benchmarks: clients, cars, visits, 1C exports."""

from crm.demo.generator import (
    DEPARTMENTS,
    DemoCar,
    DemoClient,
    DemoHousehold,
    DemoVisit,
    generate_households,
)
from crm.demo.onec import ONEC_KIND_LABELS, write_onec_export

__all__ = [
    "DEPARTMENTS",
    "ONEC_KIND_LABELS",
    "DemoCar",
    "DemoClient",
    "DemoHousehold",
    "DemoVisit",
    "generate_households",
    "write_onec_export",
]
