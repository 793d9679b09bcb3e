"""Dispatch: engineer matching, order lifecycle and service-level timers.

May use `diagnosis` types; never imports `telematics`.

Pure modules, values in and values out, no I/O and no clock (`now` is always passed in):

    geo        travel model: straight-line km x road factor / average speed
    matching   FleetIndex (the fleet and its stock as arrays), rank (one order, explained)
    assignment assign (a batch, jointly optimal) and assign_greedy (the baseline), on matching
    solvers    the only scipy import: linear_sum_assignment and a small 0/1 program
    orders     the order state machine: apply(order, command) -> (order, audit event)
    sla        SLA policy as data, timers_for(event), judge(timer, order, now)
    errors     DispatchError and its subclasses
"""
