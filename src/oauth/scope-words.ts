/**
 * Forgejo's OAuth scopes in words, for the consent page: what the broker's
 * Forgejo token lets an application do. No scope at all is full access.
 */
const CATEGORIES: Readonly<Record<string, string>> = {
  activitypub: 'ActivityPub federation',
  admin: 'site administration',
  issue: 'issues, pull request conversations and their comments',
  misc: 'miscellaneous settings',
  notification: 'your notifications',
  organization: 'organizations and teams',
  package: 'packages',
  repository: 'repositories: code, branches, pull requests, releases, wikis, Actions',
  user: 'your profile and account settings',
};

/** One sentence per scope, in the order configured; unknown scopes are shown as they are. */
export function scopesInWords(scopes: string): string[] {
  const list = scopes.split(/[\s,]+/).filter((scope) => scope !== '');
  if (list.length === 0 || list.includes('all')) return ['Full access to your account: everything you can do on the forge.'];
  return list.map((scope) => {
    if (scope === 'public-only') return 'Public repositories and organizations only.';
    const [access, category] = scope.split(':');
    const what = category === undefined ? undefined : CATEGORIES[category];
    if (what === undefined || (access !== 'read' && access !== 'write')) return `The Forgejo scope ${scope}.`;
    return access === 'read' ? `Read ${what}.` : `Read and change ${what}.`;
  });
}
