"""Traffic simulation of plans and signal control on Eclipse SUMO (F5, F6): pure functions and small
result dataclasses, no I/O (running SUMO and reading/writing files is :mod:`citytwin.workflows.simulation`).

- :mod:`.cityflow`: CityFlow ``roadnet.json`` + ``flow.json`` -> SUMO plain XML (nodes, edges,
  connections, signal programs) and vehicles, with the checks of the input and of the conversion;
- :mod:`.signals`: Webster's fixed-time plan, max-pressure control (Varaiya), plans checked against
  an intersection's links;
- :mod:`.demand`: trips from an OD matrix by zone and from a new development's floor area;
- :mod:`.results`: run metrics from SUMO's trip records, differences with confidence intervals.
"""
