import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';

/**
 * The broker's server-rendered pages: consent, connections, errors and the
 * landing page share this shell. No script; every value is escaped; the page
 * may not be framed. The Forgejo stand-in's login form is drawn with the same
 * shell and style, so the demo looks like one thing.
 */
const STYLE = `
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d232a}
main{max-width:34rem;margin:3rem auto;background:#fff;border:1px solid #d8dde3;border-radius:8px;padding:2rem}
h1{font-size:1.35rem;margin:0 0 1rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:1rem 0}
dt{color:#56606b}dd{margin:0;word-break:break-all}
.warn{background:#fff4e5;border:1px solid #f0b35a;border-radius:6px;padding:.6rem .8rem;margin:.8rem 0}
.actions{display:flex;gap:1rem;margin-top:1.5rem}
button{font:inherit;padding:.55rem 1.4rem;border-radius:6px;border:1px solid #56606b;background:#fff;cursor:pointer}
button[value=approve],button.primary{background:#1f6f43;border-color:#1f6f43;color:#fff}
h2{font-size:1.05rem;margin:1.6rem 0 .4rem}
pre{background:#f6f7f9;border:1px solid #d8dde3;border-radius:6px;padding:.6rem .8rem;margin:.4rem 0;white-space:pre-wrap;overflow-wrap:anywhere;font:14px/1.45 ui-monospace,Menlo,Consolas,monospace}
code{font-family:ui-monospace,Menlo,Consolas,monospace}
a{color:#1f5f9f}
label{display:block;margin:.9rem 0 .3rem;color:#56606b}
input:not([type=hidden]){font:inherit;width:100%;box-sizing:border-box;padding:.5rem .6rem;border:1px solid #d8dde3;border-radius:6px}
button:focus-visible,a:focus-visible{outline:3px solid #1f5f9f;outline-offset:2px}
button.danger{border-color:#b42318;color:#b42318}
.connection{border-top:1px solid #d8dde3;margin-top:1.2rem;padding-top:.4rem}
.connection ul{margin:0;padding-left:1.1rem}
.connection dd{word-break:normal;overflow-wrap:anywhere}
.status{background:#ecf8f0;border:1px solid #57a773;border-radius:6px;padding:.6rem .8rem;margin:.8rem 0}
.note{color:#56606b;font-size:.9rem}
`;

const STYLE_HASH = createHash('sha256').update(STYLE).digest('base64');

export interface ConsentView {
  readonly clientName: string | null;
  readonly clientId: string;
  /** True for self-registered clients (RFC 7591): their name is whatever they said. */
  readonly unverified: boolean;
  /** Host of the client_id URL, for metadata-document clients. */
  readonly clientIdHost: string | null;
  /** Where the browser goes after approval (host, or scheme for a native app). */
  readonly redirectTarget: string;
  readonly redirectIsLoopback: boolean;
  /** Every registered redirect URI is loopback: nothing ties the client to a site. */
  readonly loopbackOnly: boolean;
  readonly forgeHost: string;
  readonly signedInAs: string | null;
  /** The Forgejo scopes in words (scope-words.ts). */
  readonly abilities: readonly string[];
  /** The tool policy that applies to this user, in words; empty: every tool. */
  readonly toolPolicy: readonly string[];
  /** The user is not known yet, and rules for particular users or teams exist. */
  readonly policyMayDiffer: boolean;
  readonly requestId: string;
  readonly csrfToken: string;
  readonly action: string;
  /** The user's Connections page, where the approval can be revoked later. */
  readonly connectionsUrl: string;
}

/** One live session of a connection on the Connections page. */
export interface SessionLine {
  readonly era: 'legacy' | 'modern';
  readonly startedAt: number;
  readonly lastUsedAt: number;
  /** Known from the store only: another broker process holds it (shared mode). */
  readonly elsewhere: boolean;
}

export interface ConnectionView {
  readonly name: string;
  readonly clientId: string;
  /** Hosts (or app schemes) its redirect URIs go to. */
  readonly returnsTo: readonly string[];
  readonly approvedAt: number;
  readonly lastUsedAt: number | null;
  readonly sessions: readonly SessionLine[];
}

export interface ConnectionsView {
  readonly login: string | null;
  readonly forgeHost: string;
  readonly connections: readonly ConnectionView[];
  readonly action: string;
  readonly csrf: string;
  /** The name of the client just revoked, for the status line. */
  readonly revoked: string | null;
}

export function escapeHtml(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

export function renderConsentPage(view: ConsentView): string {
  const name = view.clientName ?? 'An unnamed application';
  const warnings: string[] = [];
  if (view.unverified) {
    warnings.push('This application registered itself: its name is not verified. Approve only if you just started signing in from it.');
  }
  if (view.loopbackOnly || view.redirectIsLoopback) {
    warnings.push(
      'After approval you are sent to a program on this computer (localhost). Any program on this computer could be listening there; approve only if you started this sign-in yourself.',
    );
  }
  const rows: [string, string][] = [
    ['Application', name],
    [view.clientIdHost === null ? 'Client ID' : 'Published by', view.clientIdHost ?? view.clientId],
    ['Returns to', view.redirectTarget],
    ['Forge', view.forgeHost],
  ];
  if (view.signedInAs !== null) rows.push(['Signed in as', view.signedInAs]);
  return page(
    'Allow access to your forge?',
    `<h1>Allow <strong>${escapeHtml(name)}</strong> to use ${escapeHtml(view.forgeHost)} as you?</h1>
<p>The application will act on the forge with your permissions through this broker, until you revoke its access on your <a href="${escapeHtml(view.connectionsUrl)}">Connections</a> page.</p>
<dl>${rows.map(([term, value]) => `<dt>${escapeHtml(term)}</dt><dd>${escapeHtml(value)}</dd>`).join('')}</dl>
<h2>What it will be able to do</h2>
<ul>${view.abilities.map((line) => `<li>${escapeHtml(line)}</li>`).join('')}</ul>
<h2>Tools it may use</h2>
<ul>${(view.toolPolicy.length === 0 ? ['Every tool the forge’s MCP server offers.'] : view.toolPolicy).map((line) => `<li>${escapeHtml(line)}</li>`).join('')}</ul>
${view.policyMayDiffer ? '<p>Rules for particular users or teams may change this once you have signed in.</p>' : ''}
${warnings.map((warning) => `<p class="warn">${escapeHtml(warning)}</p>`).join('\n')}
${view.signedInAs === null ? `<p>After you approve, you sign in at ${escapeHtml(view.forgeHost)}.</p>` : ''}
<form method="post" action="${escapeHtml(view.action)}">
<input type="hidden" name="request" value="${escapeHtml(view.requestId)}">
<input type="hidden" name="csrf" value="${escapeHtml(view.csrfToken)}">
<div class="actions">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</div>
</form>`,
  );
}

/** The user's Connections page: each approved client, its use and live sessions, and a Revoke form per client. */
export function renderConnectionsPage(view: ConnectionsView): string {
  const forge = escapeHtml(view.forgeHost);
  const status =
    view.revoked === null
      ? ''
      : `<p class="status" role="status">You revoked <strong>${escapeHtml(view.revoked)}</strong>: its tokens no longer work and its sessions have ended.</p>\n`;
  const intro =
    view.connections.length === 0
      ? `<p>No application is connected to ${forge} through this broker as you.</p>`
      : `<p>These applications can use ${forge} as you through this broker. Revoking one ends its access at once: its tokens stop working, its open sessions close on every server of this broker, and it must ask for your approval again.</p>`;
  const sections = view.connections.map((connection, index) => {
    const id = `connection-${index + 1}`;
    const rows: [string, string][] = [
      ['Client ID', `<code>${escapeHtml(connection.clientId)}</code>`],
      ['Returns to', connection.returnsTo.length === 0 ? 'unknown' : connection.returnsTo.map(escapeHtml).join(', ')],
      ['Approved', timeHtml(connection.approvedAt)],
      ['Last used', connection.lastUsedAt === null ? 'not yet' : timeHtml(connection.lastUsedAt)],
      ['Live sessions', sessionsHtml(connection.sessions)],
    ];
    return `<section class="connection" aria-labelledby="${id}">
<h2 id="${id}">${escapeHtml(connection.name)}</h2>
<dl>${rows.map(([term, value]) => `<dt>${escapeHtml(term)}</dt><dd>${value}</dd>`).join('')}</dl>
<form method="post" action="${escapeHtml(view.action)}">
<input type="hidden" name="client_id" value="${escapeHtml(connection.clientId)}">
<input type="hidden" name="csrf" value="${escapeHtml(view.csrf)}">
<button type="submit" class="danger" aria-label="Revoke ${escapeHtml(connection.name)}">Revoke</button>
</form>
</section>`;
  });
  const who = view.login === null ? '' : `<p>Signed in as <strong>${escapeHtml(view.login)}</strong> at ${forge}.</p>\n`;
  const note =
    view.connections.length === 0
      ? ''
      : '\n<p class="note">Live sessions are those this server of the broker holds, and, when the broker shares one upstream, the MCP sessions its other servers hold. Times are in UTC.</p>';
  return page('Your connections', `<h1>Your connections</h1>\n${who}${status}${intro}\n${sections.join('\n')}${note}`);
}

function timeHtml(ms: number): string {
  const iso = new Date(ms).toISOString();
  return `<time datetime="${iso}">${iso.slice(0, 16).replace('T', ' ')} UTC</time>`;
}

function sessionsHtml(sessions: readonly SessionLine[]): string {
  if (sessions.length === 0) return 'none';
  const line = (session: SessionLine): string => {
    const kind = session.era === 'legacy' ? 'MCP session' : 'Stateless MCP requests';
    const where = session.elsewhere ? ' (on another server of this broker)' : '';
    return `<li>${kind}${where} since ${timeHtml(session.startedAt)}, last request ${timeHtml(session.lastUsedAt)}</li>`;
  };
  return `<ul>${sessions.map(line).join('')}</ul>`;
}

export function renderMessagePage(title: string, message: string): string {
  return page(title, `<h1>${escapeHtml(title)}</h1>\n<p>${escapeHtml(message)}</p>`);
}

/** A page with a title and already-escaped body markup. */
export function renderPage(title: string, bodyHtml: string): string {
  return page(title, `<h1>${escapeHtml(title)}</h1>\n${bodyHtml}`);
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
${body}
</main>
</body>
</html>
`;
}

/**
 * Sends a page. `formTargets` are the origins (or schemes) the consent form's
 * answer may redirect to: CSP form-action also governs those redirects.
 */
export function sendPage(
  res: ServerResponse,
  status: number,
  html: string,
  formTargets: readonly string[] = [],
  headers: Record<string, string | string[]> = {},
): void {
  const formAction = ["'self'", ...formTargets].join(' ');
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': Buffer.byteLength(html),
    'cache-control': 'no-store',
    'content-security-policy': `default-src 'none'; style-src 'sha256-${STYLE_HASH}'; form-action ${formAction}; frame-ancestors 'none'; base-uri 'none'`,
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    ...headers,
  });
  res.end(html);
}
