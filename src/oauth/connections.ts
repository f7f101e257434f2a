import { createHmac } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

import type { LiveSessionView } from '../pool/live-view.js';
import type { RevocationTarget } from '../store/admin-store.js';
import { OAUTH_PATHS, type OAuthContext } from './context.js';
import { OAuthError, toOAuthError } from './errors.js';
import { parseCookies, readForm, singleParam } from './http.js';
import { renderConnectionsPage, renderMessagePage, sendPage, type ConnectionView, type SessionLine } from './pages.js';
import { describeRedirectTarget } from './redirect-uri.js';
import { equalHashes, sha256Hex } from './tokens.js';

/** The live sessions the page lists: this broker process's (the LiveSessions of src/revocation). */
export interface ConnectionSessions {
  of(userId: string): readonly LiveSessionView[];
}

export interface ConnectionsOptions {
  readonly sessions: ConnectionSessions;
  /** Revokes and ends the live sessions on every replica (the revocation follower); the store alone without a broker. */
  readonly revoke: (target: RevocationTarget) => Promise<unknown>;
}

/**
 * The user's Connections page (`/oauth/consents`): each client they
 * approved, with when, when it was last used and its live sessions, and a
 * Revoke that ends its grants and live sessions at once (the next sign-in
 * from that client asks again). The form carries a token derived from the
 * sign-in cookie, which a cross-site page cannot read.
 */
export class ConnectionsPage {
  readonly #context: OAuthContext;
  readonly #options: ConnectionsOptions;

  constructor(context: OAuthContext, options: ConnectionsOptions) {
    this.#context = context;
    this.#options = options;
  }

  /** GET /oauth/consents */
  async list(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const signIn = await this.#signIn(req);
    if (signIn === undefined) {
      sendPage(
        res,
        401,
        renderMessagePage('Not signed in', 'Sign in from an MCP client first; the applications you connect are listed here afterwards.'),
      );
      return;
    }
    const { store } = this.#context;
    const [user, connections, stored] = await Promise.all([
      store.users.find(signIn.userId),
      store.admin.connections(signIn.userId),
      store.admin.storedSessionsOf(signIn.userId),
    ]);
    const live = this.#options.sessions.of(signIn.userId);
    const held = new Set(live.map((session) => session.sessionIdHash).filter((hash) => hash !== undefined));
    const elsewhere = stored.filter((session) => !held.has(session.sessionIdHash));
    const views: ConnectionView[] = [];
    for (const connection of connections) {
      const client = await this.#describe(connection.clientId);
      const sessions: SessionLine[] = [
        ...live.filter((session) => session.clientId === connection.clientId).map((session) => ({ ...session, elsewhere: false })),
        ...elsewhere
          .filter((session) => session.clientId === connection.clientId)
          .map((session) => ({ era: 'legacy' as const, startedAt: session.createdAt, lastUsedAt: session.lastUsedAt, elsewhere: true })),
      ];
      views.push({
        ...client,
        clientId: connection.clientId,
        approvedAt: connection.approvedAt,
        lastUsedAt: connection.lastUsedAt,
        sessions,
      });
    }
    const revokedId = url.searchParams.get('revoked');
    const revoked = revokedId === null ? undefined : (await this.#describe(revokedId)).name;
    sendPage(
      res,
      200,
      renderConnectionsPage({
        login: user?.forgejoLogin ?? null,
        forgeHost: this.#context.forgejo.baseUrl.host,
        connections: views,
        action: this.#context.issuer + OAUTH_PATHS.consents,
        csrf: signIn.csrf,
        revoked: revoked ?? null,
      }),
    );
  }

  /** POST /oauth/consents: revoke one client's access. */
  async revoke(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const signIn = await this.#signIn(req);
      if (signIn === undefined) throw new OAuthError('access_denied', 'not signed in');
      const form = await readForm(req);
      const csrf = singleParam(form, 'csrf');
      const clientId = singleParam(form, 'client_id');
      if (csrf === undefined || !equalHashes(csrf, signIn.csrf))
        throw new OAuthError('access_denied', 'this form does not belong to this browser');
      if (clientId === undefined) throw new OAuthError('invalid_request', 'client_id is required');
      await this.#options.revoke({ kind: 'connection', userId: signIn.userId, clientId });
      this.#context.logger.info({ event: 'approval_revoked', userId: signIn.userId, clientId }, 'approval revoked');
      this.#context.events({ kind: 'revocation', userId: signIn.userId, clientId, detail: 'approval revoked by the user' });
      const back = new URL(this.#context.issuer + OAUTH_PATHS.consents);
      back.searchParams.set('revoked', clientId);
      res.writeHead(303, { location: back.href, 'cache-control': 'no-store' });
      res.end();
    } catch (error) {
      const oauthError = toOAuthError(error);
      sendPage(res, oauthError.code === 'access_denied' ? 403 : 400, renderMessagePage('Cannot revoke', oauthError.message));
    }
  }

  /** The client's name and where it returns to; a client that cannot be resolved any more shows its id. */
  async #describe(clientId: string): Promise<{ name: string; returnsTo: readonly string[] }> {
    try {
      const client = await this.#context.clients.resolve(clientId);
      return { name: client.clientName ?? clientId, returnsTo: [...new Set(client.redirectUris.map(describeRedirectTarget))] };
    } catch {
      return { name: clientId, returnsTo: [] };
    }
  }

  /** The signed-in user and the form token derived from their sign-in cookie. */
  async #signIn(req: IncomingMessage): Promise<{ userId: string; csrf: string } | undefined> {
    const cookie = parseCookies(req).get(this.#context.cookies.signIn);
    if (cookie === undefined) return undefined;
    const userId = await this.#context.store.signIns.findUserId(sha256Hex(cookie), this.#context.now());
    if (userId === undefined) return undefined;
    return { userId, csrf: createHmac('sha256', cookie).update('consents').digest('base64url') };
  }
}
