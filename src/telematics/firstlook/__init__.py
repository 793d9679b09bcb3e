"""What `telematics demo` adds to a running service so that its first look tells the whole story.

This package owns the demo's world, built and driven only through the service's public doors, as
an operator and a field team would: the service network seeded over the HTTP API (`network`),
the role tokens kept in the data folder (`roles`), the fault schedule handed to the simulated
fleet (`faults`, pure) and the engineer played by the autopilot (`autopilot`). It never reaches
into the store, the gateway or the composition root; `telematics.demo` wires it to a running
service.
"""
