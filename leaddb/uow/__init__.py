"""Units of work: one database transaction, its repositories, and what its writes touched.

``leaddb.uow.base`` holds the transaction and the cache bookkeeping; ``leaddb.uow.units`` the
tenant and platform units of work a service opens through ``LeadDB``.
"""

from leaddb.uow.base import UnitOfWork
from leaddb.uow.orm import related
from leaddb.uow.units import PlatformUnitOfWork, TenantUnitOfWork

__all__ = ["PlatformUnitOfWork", "TenantUnitOfWork", "UnitOfWork", "related"]
