import type { SecurityEvents } from '../audit/security-events.js';
import type { Logger } from '../log/logger.js';
import type { RevocationTarget, TokenNotice } from '../store/admin-store.js';
import type { ForgejoTokens, Store, User } from '../store/store.js';
import type { ClientAssertionVerifier } from './client-assertion.js';
import type { ClientDirectory } from './clients.js';

/** Paths of the broker's own OAuth endpoints. */
export const OAUTH_PATHS = {
  authorize: '/oauth/authorize',
  consent: '/oauth/consent',
  callback: '/oauth/callback',
  token: '/oauth/token',
  register: '/oauth/register',
  revoke: '/oauth/revoke',
  consents: '/oauth/consents',
  authorizationServerMetadata: '/.well-known/oauth-authorization-server',
  protectedResourceMetadata: '/.well-known/oauth-protected-resource',
} as const;

/** What the authorization flow needs from Forgejo (ForgejoClient in production). */
export interface ForgejoLogin {
  readonly baseUrl: URL;
  authorizationUrl(state: string, codeChallenge: string): Promise<URL>;
  exchangeCode(callback: URLSearchParams, expectedState: string, codeVerifier: string): Promise<ForgejoTokens>;
  currentUser(accessToken: string): Promise<{ readonly id: number; readonly login: string }>;
}

/** Where a fresh Forgejo login goes (ForgejoCredentialManager in production). */
export interface LoginSink {
  storeLogin(user: User, tokens: ForgejoTokens): Promise<void>;
}

export interface OAuthLifetimes {
  readonly accessTokenMs: number;
  readonly refreshTokenMs: number;
  readonly authorizationCodeMs: number;
  /** From /authorize to the end of consent and Forgejo login. */
  readonly pendingAuthorizationMs: number;
  readonly signInMs: number;
}

export interface CookieNames {
  /** The broker sign-in cookie: who the returning user is. */
  readonly signIn: string;
  /** Binds an authorization in progress to the browser that started it. */
  readonly browser: string;
  readonly secure: boolean;
}

/**
 * `__Host-` cookies must be Secure, and browsers drop Secure cookies set over
 * plain http on a non-loopback host. With an https public URL the cookies are
 * `__Host-` + Secure; with an http one (loopback development, tests) they lose
 * both the prefix and Secure, keeping HttpOnly, SameSite=Lax and Path=/.
 */
export function cookieNames(publicUrl: URL): CookieNames {
  const secure = publicUrl.protocol === 'https:';
  const prefix = secure ? '__Host-' : '';
  return { signIn: `${prefix}fmb-signin`, browser: `${prefix}fmb-flow`, secure };
}

/** Everything the endpoints share. */
export interface OAuthContext {
  /** BROKER_PUBLIC_URL without a trailing slash; also the `iss` of authorization responses. */
  readonly issuer: string;
  /** `<issuer>/mcp`: the only resource tokens are issued for. */
  readonly resource: string;
  readonly resourceMetadataUrl: string;
  readonly store: Store;
  readonly clients: ClientDirectory;
  readonly forgejo: ForgejoLogin;
  readonly logins: LoginSink;
  readonly logger: Logger;
  readonly now: () => number;
  readonly lifetimes: OAuthLifetimes;
  /** How long a rotated refresh token still yields its successor while that is unused; 0 disables. */
  readonly refreshGraceMs: number;
  /** Verifies private_key_jwt client assertions. */
  readonly assertions: ClientAssertionVerifier;
  readonly cookies: CookieNames;
  /** Sign-ins, consents and revocations, for the audit log. */
  readonly events: SecurityEvents;
  /** What the consent page says a client will be able to do. */
  readonly consentTerms: ConsentTerms;
  /** Where revocations and token notices go: the revocation log, so every replica learns of them. */
  readonly revocations: RevocationWriter;
}

/** Writes the revocation log (the revocation follower in a broker: it applies what it wrote here at once). */
export interface RevocationWriter {
  /** Revokes the target's grants, approvals and sessions, and logs it. */
  revoke(target: RevocationTarget): Promise<unknown>;
  /** Logs a change already stored that makes tokens invalid. */
  notice(notice: TokenNotice): Promise<unknown>;
}

/** What an approved client may do: the Forgejo scopes in words, and the tool policy for a user (undefined: not known yet). */
export interface ConsentTerms {
  readonly abilities: readonly string[];
  toolPolicyFor(user: { readonly userId: string; readonly forgejoLogin: string } | undefined): Promise<ToolPolicyWords>;
}

export interface ToolPolicyWords {
  /** Empty: every tool. */
  readonly lines: readonly string[];
  /** The user is not known, and rules for particular users or teams exist. */
  readonly mayDiffer: boolean;
}
