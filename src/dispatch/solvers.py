"""The optimisers batch assignment relies on, typed: the only module that imports scipy.

This module owns two solvers over plain numpy arrays: a rectangular minimum-cost assignment
(`scipy.optimize.linear_sum_assignment`, the Jonker-Volgenant algorithm) and a small 0/1 program
that picks at most one option per group under exclusivity and capacity constraints
(`scipy.optimize.milp`, HiGHS). It knows nothing of engineers or orders, and must never do I/O.

scipy ships no type information; the untyped calls are confined here and their results are
converted to typed arrays at once.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import sparse  # type: ignore[import-untyped]
from scipy.optimize import (  # type: ignore[import-untyped]
    Bounds,
    LinearConstraint,
    linear_sum_assignment,
    milp,
)

_IntArray = NDArray[np.int64]
_FloatArray = NDArray[np.float64]


def min_cost_assignment(cost: _FloatArray) -> _IntArray:
    """The column assigned to each row, minimising the total cost.

    Args:
        cost: Shape (rows, columns) with columns >= rows; `inf` forbids a pair. Some assignment
            of every row to a distinct column must have a finite cost.

    Returns:
        Shape (rows,): the column of each row.
    """
    rows, cols = linear_sum_assignment(cost)
    chosen = np.full(cost.shape[0], -1, dtype=np.int64)
    chosen[np.asarray(rows, dtype=np.int64)] = np.asarray(cols, dtype=np.int64)
    return chosen


def select_options(
    costs: _FloatArray,
    groups: _IntArray,
    n_groups: int,
    unserved_cost: float,
    exclusive: _IntArray,
    usage: tuple[_IntArray, _IntArray, _IntArray],
    capacity: _IntArray,
) -> _IntArray | None:
    """Pick at most one option per group, minimising cost, under exclusivity and capacities.

    Args:
        costs: Shape (m,): the cost of each option.
        groups: Shape (m,): the group (0..n_groups-1) of each option. A group without a chosen
            option costs `unserved_cost`.
        n_groups: Number of groups.
        unserved_cost: The cost of a group left without an option.
        exclusive: Shape (m,): a key (0..) per option; options sharing a key exclude each other.
        usage: (resource, option, units) triplets: choosing the option uses that many units.
        capacity: Shape (resources,): units available of each resource.

    Returns:
        Shape (n_groups,): the chosen option of each group, -1 for none; None when the solver
        did not reach a proven optimum.
    """
    m = costs.size
    # Variables: one per option, then one "unserved" slack per group.
    objective = np.concatenate((costs, np.full(n_groups, unserved_cost)))
    group_rows = sparse.csr_array(
        (
            np.ones(m + n_groups),
            (np.concatenate((groups, np.arange(n_groups))), np.arange(m + n_groups)),
        ),
        shape=(n_groups, m + n_groups),
    )
    n_keys = int(exclusive.max()) + 1 if m else 0
    key_rows = sparse.csr_array(
        (np.ones(m), (exclusive, np.arange(m))), shape=(n_keys, m + n_groups)
    )
    resource, option, units = usage
    capacity_rows = sparse.csr_array(
        (units.astype(np.float64), (resource, option)), shape=(capacity.size, m + n_groups)
    )
    constraints = [
        LinearConstraint(group_rows, 1.0, 1.0),
        LinearConstraint(key_rows, 0.0, 1.0),
        LinearConstraint(capacity_rows, -np.inf, capacity.astype(np.float64)),
    ]
    result = milp(
        objective,
        integrality=np.ones(m + n_groups),
        bounds=Bounds(0.0, 1.0),
        constraints=constraints,
    )
    if result.status != 0 or result.x is None:
        return None
    x = np.asarray(result.x, dtype=np.float64)[:m] > 0.5
    chosen = np.full(n_groups, -1, dtype=np.int64)
    picked = np.flatnonzero(x)
    chosen[groups[picked]] = picked
    return chosen
