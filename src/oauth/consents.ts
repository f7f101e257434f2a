import { createHmac } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

import { OAUTH_PATHS, type OAuthContext } from './context.js';
import { OAuthError, toOAuthError } from './errors.js';
import { parseCookies, readForm, singleParam } from './http.js';
import { escapeHtml, renderMessagePage, renderPage, sendPage } from './pages.js';
import { equalHashes, sha256Hex } from './tokens.js';

/**
 * Where a signed-in user sees the clients they approved and revokes an
 * approval: the next sign-in from that client asks again, and every grant of
 * (user, client) ends at once.
 */
export class ConsentManagement {
  readonly #context: OAuthContext;

  constructor(context: OAuthContext) {
    this.#context = context;
  }

  /** GET /oauth/consents */
  async list(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const signIn = await this.#signIn(req);
    if (signIn === undefined) {
      sendPage(res, 401, renderMessagePage('Not signed in', 'Sign in from an MCP client first; approvals are listed here afterwards.'));
      return;
    }
    const user = await this.#context.store.users.find(signIn.userId);
    const clientIds = await this.#context.store.consents.listClientIds(signIn.userId);
    const rows: string[] = [];
    for (const clientId of clientIds) {
      const name = await this.#context.clients.resolve(clientId).then(
        (client) => client.clientName ?? clientId,
        () => clientId,
      );
      rows.push(`<li><form method="post" action="${escapeHtml(this.#context.issuer + OAUTH_PATHS.consents)}">
<strong>${escapeHtml(name)}</strong> <small>${escapeHtml(clientId)}</small>
<input type="hidden" name="client_id" value="${escapeHtml(clientId)}">
<input type="hidden" name="csrf" value="${escapeHtml(signIn.csrf)}">
<button type="submit">Revoke</button></form></li>`);
    }
    const body =
      rows.length === 0
        ? '<p>You have not approved any application.</p>'
        : `<p>These applications may use the forge as you. Revoking ends their access now.</p><ul>${rows.join('\n')}</ul>`;
    sendPage(res, 200, renderPage(`Approved applications of ${user?.forgejoLogin ?? 'you'}`, body));
  }

  /** POST /oauth/consents: revoke one approval. */
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
      await this.#context.store.consents.revoke(signIn.userId, clientId, this.#context.now());
      this.#context.logger.info({ event: 'approval_revoked', userId: signIn.userId, clientId }, 'approval revoked');
      this.#context.events({ kind: 'revocation', userId: signIn.userId, clientId, detail: 'approval revoked by the user' });
      res.writeHead(303, { location: `${this.#context.issuer}${OAUTH_PATHS.consents}`, 'cache-control': 'no-store' });
      res.end();
    } catch (error) {
      const oauthError = toOAuthError(error);
      sendPage(res, oauthError.code === 'access_denied' ? 403 : 400, renderMessagePage('Cannot revoke', oauthError.message));
    }
  }

  /** The signed-in user and the form token derived from their sign-in cookie, which a cross-site page cannot read. */
  async #signIn(req: IncomingMessage): Promise<{ userId: string; csrf: string } | undefined> {
    const cookie = parseCookies(req).get(this.#context.cookies.signIn);
    if (cookie === undefined) return undefined;
    const userId = await this.#context.store.signIns.findUserId(sha256Hex(cookie), this.#context.now());
    if (userId === undefined) return undefined;
    return { userId, csrf: createHmac('sha256', cookie).update('consents').digest('base64url') };
  }
}
