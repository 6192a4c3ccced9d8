"""The role table: who may do what. Every console page and API endpoint checks one of these permissions.

Team roles come from `Membership.role`; platform roles (operator, support) from `StaffRole`. This module is
the one place the table lives; the tenancy test reads its expectations from here too.
"""
OWNER, ADMIN, BILLING, MEMBER = "owner", "admin", "billing", "member"
OPERATOR, SUPPORT = "operator", "support"

TEAM_ROLES = [(OWNER, "Owner"), (ADMIN, "Admin"), (BILLING, "Billing"), (MEMBER, "Member")]
PLATFORM_ROLES = [(OPERATOR, "Operator"), (SUPPORT, "Support")]

# Permissions inside a team.
KEYS_READ = "keys.read"            # see every key of the team (masked)
KEYS_MANAGE = "keys.manage"        # create/revoke any key, key groups
KEYS_OWN = "keys.own"              # create/use/revoke one's own keys
ROUTES_MANAGE = "routes.manage"
CHANNELS_MANAGE = "channels.manage"  # the team's own (bring-your-own-key) channels
LOGS_READ = "logs.read"            # every usage record of the team
USAGE_OWN = "usage.own"            # usage of one's own keys
TICKETS_WRITE = "tickets.write"
TICKETS_BILLING = "tickets.billing"  # open and follow billing tickets (and one's own), without the rest
BILLING_READ = "billing.read"
BILLING_REDEEM = "billing.redeem"
BILLING_MANAGE = "billing.manage"  # the team's billing policy: monthly cap, alert thresholds and recipients
MEMBERS_MANAGE = "members.manage"

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    OWNER: frozenset({KEYS_READ, KEYS_MANAGE, KEYS_OWN, ROUTES_MANAGE, CHANNELS_MANAGE, LOGS_READ, USAGE_OWN,
                      TICKETS_WRITE, BILLING_READ, BILLING_REDEEM, BILLING_MANAGE, MEMBERS_MANAGE}),
    ADMIN: frozenset({KEYS_READ, KEYS_MANAGE, KEYS_OWN, ROUTES_MANAGE, CHANNELS_MANAGE, LOGS_READ, USAGE_OWN,
                      TICKETS_WRITE}),
    BILLING: frozenset({KEYS_READ, USAGE_OWN, BILLING_READ, BILLING_REDEEM, BILLING_MANAGE,
                       TICKETS_BILLING}),
    MEMBER: frozenset({KEYS_OWN, USAGE_OWN, TICKETS_WRITE}),
    # Platform staff, when looking at a team: operators may do everything, support may read logs and
    # write tickets (secrets are redacted everywhere they look).
    OPERATOR: frozenset({KEYS_READ, KEYS_MANAGE, KEYS_OWN, ROUTES_MANAGE, CHANNELS_MANAGE, LOGS_READ, USAGE_OWN,
                         TICKETS_WRITE, BILLING_READ, BILLING_REDEEM, BILLING_MANAGE, MEMBERS_MANAGE}),
    SUPPORT: frozenset({KEYS_READ, LOGS_READ, USAGE_OWN, TICKETS_WRITE}),
}

# Platform-wide permissions (catalog, prices, platform channels, credit).
PLATFORM_MANAGE = "platform.manage"
PLATFORM_READ = "platform.read"
PLATFORM_PERMISSIONS: dict[str, frozenset[str]] = {
    OPERATOR: frozenset({PLATFORM_MANAGE, PLATFORM_READ}),
    SUPPORT: frozenset({PLATFORM_READ}),
}


def team_permissions(team_role: str | None, platform_role: str | None) -> frozenset[str]:
    perms = ROLE_PERMISSIONS.get(team_role, frozenset()) if team_role else frozenset()
    if platform_role:
        perms |= ROLE_PERMISSIONS[platform_role]
    return perms
