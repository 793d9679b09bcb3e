"""Dispatch: engineer matching, order lifecycle and service-level timers.

May use `diagnosis` types; never imports `telematics`.

Pure modules, values in and values out, no I/O and no clock (`now` is always passed in):

    geo         travel model: straight-line km x road factor / average speed
    needs       what an order asks for: OrderNeed, PartNeed
    fleet       what matching chooses from: Engineer, Warehouse, MatchingPolicy
    ranking     what matching answers: Ranking, Candidate, RouteStop, Rejection, and their text
    evaluation  one order's options and rejections, package-internal (index, matching, assignment)
    fleet_index FleetIndex (the fleet and its stock as arrays) and an order's fastest options
    matching    rank (one order, explained)
    assignment  assign (a batch, jointly optimal) and assign_greedy (the baseline), on matching
    solvers     the only scipy import: linear_sum_assignment and a small 0/1 program
    orders      the order state machine: apply(order, command) -> (order, audit event)
    sla         SLA policy as data, timers_for(event), judge(timer, order, now)
    errors      DispatchError and its subclasses
"""
