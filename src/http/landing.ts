import { OAUTH_PATHS } from '../oauth/context.js';
import { MCP_PATH, type RouteHandler } from './route.js';
import { escapeHtml, renderPage, sendPage } from '../oauth/pages.js';

/**
 * `GET /`: what this service is, the MCP URL to paste, and each client's
 * setup with that URL already in it, so a user can copy instead of reading
 * the README.
 */
export function landingPage(publicUrl: URL, forgejoUrl: URL): RouteHandler {
  const html = renderLandingPage(new URL(MCP_PATH, publicUrl).href, forgejoUrl.host, new URL(OAUTH_PATHS.consents, publicUrl).href);
  return (req, res, url) => {
    if (url.pathname !== '/' || (req.method !== 'GET' && req.method !== 'HEAD')) return Promise.resolve(false);
    sendPage(res, 200, html);
    return Promise.resolve(true);
  };
}

interface ClientSetup {
  readonly id: string;
  readonly name: string;
  /** Escaped markup before the snippet. */
  readonly how: string;
  readonly snippet: string;
  /** Escaped markup after it. */
  readonly then?: string;
}

export function renderLandingPage(mcpUrl: string, forgeHost: string, connectionsUrl: string): string {
  const forge = escapeHtml(forgeHost);
  const clients: ClientSetup[] = [
    {
      id: 'claude-code',
      name: 'Claude Code',
      how: 'In a terminal:',
      snippet: `claude mcp add --transport http forgejo ${mcpUrl}`,
      then: 'Then type <code>/mcp</code> in Claude Code and choose <em>forgejo</em> to sign in.',
    },
    {
      id: 'claude-desktop',
      name: 'Claude Desktop and claude.ai',
      how: 'Settings → Connectors → <em>Add custom connector</em>, with this URL:',
      snippet: mcpUrl,
    },
    {
      id: 'cursor',
      name: 'Cursor',
      how: 'In <code>~/.cursor/mcp.json</code> (or <code>.cursor/mcp.json</code> in a project):',
      snippet: JSON.stringify({ mcpServers: { forgejo: { url: mcpUrl } } }, null, 2),
    },
    {
      id: 'vscode',
      name: 'VS Code',
      how: 'In <code>.vscode/mcp.json</code> of your workspace:',
      snippet: JSON.stringify({ servers: { forgejo: { type: 'http', url: mcpUrl } } }, null, 2),
    },
    {
      id: 'chatgpt',
      name: 'ChatGPT',
      how: 'Settings → Connectors → <em>Create</em>, authentication <em>OAuth</em>, with this MCP server URL:',
      snippet: mcpUrl,
    },
    {
      id: 'mcp-remote',
      name: 'Clients without remote servers',
      how: 'A client that only starts local (stdio) servers runs this one as its command:',
      snippet: `npx mcp-remote ${mcpUrl}`,
    },
  ];
  const sections = clients.map(
    (client) => `<section aria-labelledby="${client.id}">
<h2 id="${client.id}">${escapeHtml(client.name)}</h2>
<p>${client.how}</p>
<pre><code>${escapeHtml(client.snippet)}</code></pre>${client.then === undefined ? '' : `\n<p>${client.then}</p>`}
</section>`,
  );
  return renderPage(
    `Use ${forgeHost} from your AI tools`,
    `<p>This is an MCP server for the forge at ${forge}. Your AI tools (Claude, Cursor, VS Code, ChatGPT, anything that speaks MCP) work on the forge through it <strong>as you</strong>: the first time a tool connects, you approve it here and sign in at ${forge}. No access token is pasted anywhere.</p>
<section aria-labelledby="mcp-url">
<h2 id="mcp-url">MCP server URL</h2>
<pre><code>${escapeHtml(mcpUrl)}</code></pre>
</section>
${sections.join('\n')}
<section aria-labelledby="connections">
<h2 id="connections">Your connections</h2>
<p><a href="${escapeHtml(connectionsUrl)}">See and revoke the applications you connected</a> (after your first sign-in).</p>
</section>`,
  );
}
