/** Names always passed from the broker's environment to a child, when set. */
const BASE_ALLOWLIST = ['PATH', 'HOME', 'LANG', 'LANGUAGE', 'TZ', 'TMPDIR', 'SSL_CERT_FILE', 'SSL_CERT_DIR'];

/**
 * The complete environment of a child: the Forgejo URL and the token it acts
 * with (none for a shared upstream, which takes each request's), plus a small allowlist of the broker's own variables. Nothing else
 * leaks, so a broker secret (encryption key, client secret) never reaches a
 * child.
 */
export function childEnvironment(
  parentEnv: Readonly<Record<string, string | undefined>>,
  extraAllowed: readonly string[],
  forgejoUrl: string,
  forgejoToken: string | undefined,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(parentEnv)) {
    if (value === undefined) continue;
    if (BASE_ALLOWLIST.includes(name) || name.startsWith('LC_') || extraAllowed.includes(name)) env[name] = value;
  }
  env.FORGEJO_URL = forgejoUrl;
  // A shared upstream gets no token at all: with one, a request without the user's header would act as its owner.
  delete env.GITEA_ACCESS_TOKEN;
  if (forgejoToken === undefined) delete env.FORGEJO_ACCESS_TOKEN;
  else env.FORGEJO_ACCESS_TOKEN = forgejoToken;
  return env;
}
