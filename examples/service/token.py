"""Print a session token for the example service: ``python -m examples.service.token``.

The service has no login route (that is an identity provider's job); a real one would call
``db.sessions.create`` after authenticating the user. This does the same for a development
database: it finds or creates the organization (by slug) and its user (by email), then starts a
session for that user. Run ``leaddb migrate`` first.
"""

from __future__ import annotations

import argparse
import asyncio

from leaddb import LeadDB
from leaddb.models import OrganizationCreate, UserCreate


async def token_for(db: LeadDB, slug: str, email: str) -> str:
    """A new session token of ``email`` in the organization ``slug``, both made if missing."""
    async with db.platform() as platform:
        organization = await platform.organizations.get_by_slug(slug)
        if organization is None:
            organization = await platform.organizations.create(
                OrganizationCreate(name=slug.title(), slug=slug)
            )
        await platform.commit()
    async with db.tenant(organization.id) as uow:
        user = await uow.users.get_by_email(email)
        if user is None:
            name = email.split("@", 1)[0] or email
            user = await uow.users.create(UserCreate(email=email, full_name=name))
        await uow.commit()
    return await db.sessions.create(user_id=user.id, organization_id=organization.id)


async def main(slug: str, email: str) -> None:
    async with await LeadDB.connect() as db:
        print(await token_for(db, slug, email))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--organization", default="acme", help="the organization's slug")
    parser.add_argument("--email", default="dev@example.com", help="the user's email")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.organization, arguments.email))
