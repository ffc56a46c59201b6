"""Cost-optimal allocation of a budget across data sources.

- ``problem``: fitted laws, cost models and an objective → per-source gain and cost curves
  (:class:`~planner.allocate.problem.AllocationProblem`); ``model`` compiles them with sympy.
- ``solve``: the budget solver (KKT water-filling; guard-rails by their multipliers).
- ``plan``: the plan at one budget, with its uncertainty and the point-estimate comparison.
- ``frontier``: plans across budgets, and where the best single source changes.
- ``mixture``: the separability check (mixed runs, the confirmation anneal).
- ``loader`` and ``session``: the problem from the store and the options people type.
- ``reference``: a general-purpose solver the tests and benchmarks check against.
"""

from __future__ import annotations
