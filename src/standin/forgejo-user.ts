/** A user of the Forgejo stand-in: who can sign in, and what the API says of them. */
export interface StandinUser {
  readonly id: number;
  readonly login: string;
  readonly password: string;
  readonly fullName: string;
  readonly email: string;
  /** The organization teams they belong to (`GET /api/v1/user/teams`); none when absent. */
  readonly teams?: readonly StandinTeam[];
}

/** A team of an organization, as `GET /api/v1/user/teams` lists it. */
export interface StandinTeam {
  readonly org: string;
  readonly team: string;
}

/**
 * Forgejo's `api.Team` for a membership: the fields a client reads (`id`,
 * `name`, `organization` with `username` and `name`), with the defaults of a
 * plain member team.
 */
export function teamJson(membership: StandinTeam, index: number, baseUrl: string): Record<string, unknown> {
  const orgId = 1000 + [...membership.org].reduce((sum, c) => sum + c.charCodeAt(0), 0);
  return {
    id: 100 + index,
    name: membership.team,
    description: '',
    organization: {
      id: orgId,
      name: membership.org,
      username: membership.org,
      full_name: '',
      avatar_url: `${baseUrl}/avatars/org-${orgId}`,
      visibility: 'public',
    },
    includes_all_repositories: false,
    permission: 'read',
    units: ['repo.code', 'repo.issues', 'repo.pulls'],
    can_create_org_repo: false,
  };
}
