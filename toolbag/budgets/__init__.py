"""Spend budgets for the whole fleet, for teams and for callers, per calendar day and month.

A job's estimated cost is reserved at submit (``Budgets.reserve``, one Lua script over every budget the job
counts in) and each attempt's actual cost is charged after its call (``Budgets.settle``). How to set them:
``docs/budgets.md``.
"""

from toolbag.budgets.ledger import BudgetExceeded, Budgets, ScopeSpend
from toolbag.budgets.periods import Period, periods

__all__ = ["BudgetExceeded", "Budgets", "Period", "ScopeSpend", "periods"]
