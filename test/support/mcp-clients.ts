/**
 * MCP clients: the SDK client with in-memory OAuth and a person at a browser
 * (`signInWithSdk`), the third-party clients as processes, Chromium, and
 * `text()` of a tool result.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  Client,
  type OAuthClientMetadata,
  type OAuthClientProvider,
  type OAuthDiscoveryState,
  type StoredOAuthClientInformation,
  type StoredOAuthTokens,
  StreamableHTTPClientTransport,
  type StreamableHTTPClientTransportOptions,
  UnauthorizedError,
  type VersionNegotiationMode,
} from '@modelcontextprotocol/client';
import { type Browser, chromium } from 'playwright-core';
import type { StandinUser } from '../../src/standin/forgejo.js';
import { skipIfMissing } from './host.js';
import { CLIENT_REDIRECT, consentFields, TestBrowser } from './oauth.js';

// --- the SDK client's OAuth, in memory
/**
 * The MCP SDK's client-side OAuth, with everything kept in memory and the
 * browser step left to the test: `redirectToAuthorization` only records the
 * URL the SDK wants the user to open.
 */
export class InMemoryOAuthClientProvider implements OAuthClientProvider {
  authorizationUrl: URL | undefined;
  #client: StoredOAuthClientInformation | undefined;
  #tokens: StoredOAuthTokens | undefined;
  #codeVerifier = '';

  get redirectUrl(): string {
    return CLIENT_REDIRECT;
  }

  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: 'MCP SDK test client',
      redirect_uris: [CLIENT_REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  clientInformation(): StoredOAuthClientInformation | undefined {
    return this.#client;
  }

  saveClientInformation(client: StoredOAuthClientInformation): void {
    this.#client = client;
  }

  tokens(): StoredOAuthTokens | undefined {
    return this.#tokens;
  }

  saveTokens(tokens: StoredOAuthTokens): void {
    this.#tokens = tokens;
  }

  redirectToAuthorization(authorizationUrl: URL): void {
    this.authorizationUrl = authorizationUrl;
  }

  saveCodeVerifier(codeVerifier: string): void {
    this.#codeVerifier = codeVerifier;
  }

  codeVerifier(): string {
    return this.#codeVerifier;
  }
}

// --- the SDK client and a person at a browser
/**
 * The client side of the end-to-end sign-in tests: the MCP SDK's own
 * client (`Client`, `StreamableHTTPClientTransport` with an
 * `OAuthClientProvider`), and a person at a browser who approves on the
 * broker's consent page and types their password into Forgejo's login form.
 */

export const CLIENT_INFO = { name: 'e2e-sign-in-client', version: '1.0.0' };

/**
 * The in-memory provider, plus what the tests look at: every authorization
 * URL the SDK wanted opened, and optionally a Client ID Metadata Document
 * URL (the SDK then uses it as client_id instead of registering).
 */
export class E2EOAuthProvider extends InMemoryOAuthClientProvider {
  readonly authorizations: URL[] = [];
  readonly clientMetadataUrl: string | undefined;
  readonly #clientName: string;
  #discovery: OAuthDiscoveryState | undefined;

  constructor(options: { clientName: string; clientMetadataUrl?: string }) {
    super();
    this.#clientName = options.clientName;
    this.clientMetadataUrl = options.clientMetadataUrl;
  }

  override get clientMetadata(): OAuthClientMetadata {
    return { ...super.clientMetadata, client_name: this.#clientName };
  }

  override redirectToAuthorization(authorizationUrl: URL): void {
    super.redirectToAuthorization(authorizationUrl);
    this.authorizations.push(authorizationUrl);
  }

  /** Kept across the redirect, so the SDK checks the callback against the server it started with (SEP-2352). */
  saveDiscoveryState(state: OAuthDiscoveryState): void {
    this.#discovery = state;
  }

  discoveryState(): OAuthDiscoveryState | undefined {
    return this.#discovery;
  }
}

/** What the person saw on the way from the authorization URL back to the client. */
export interface BrowserSignIn {
  /** The broker's consent page; undefined when consent was remembered for a signed-in browser. */
  readonly consentHtml: string | undefined;
  /** Where Forgejo showed its login form; undefined when Forgejo already knew the browser. */
  readonly loginFormUrl: string | undefined;
  /** The query of the redirect to the client (code, state, iss). */
  readonly callback: URLSearchParams;
}

function decodeEntities(value: string): string {
  return value
    .replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)))
    .replace(/&#x([0-9a-f]+);/gi, (_, code: string) => String.fromCharCode(Number.parseInt(code, 16)))
    .replaceAll('&quot;', '"')
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');
}

/** The first POST form of a page: its action and hidden fields. */
export function postForm(html: string, pageUrl: string): { action: string; hidden: Record<string, string> } {
  const tag = /<form\b[^>]*\bmethod="post"[^>]*>/i.exec(html)?.[0];
  if (tag === undefined) throw new Error(`no POST form at ${pageUrl}:\n${html}`);
  const action = new URL(decodeEntities(/\baction="([^"]*)"/i.exec(tag)?.[1] ?? pageUrl), pageUrl).href;
  const hidden: Record<string, string> = {};
  for (const [input] of html.matchAll(/<input\b[^>]*\btype="hidden"[^>]*>/gi)) {
    const name = /\bname="([^"]*)"/i.exec(input)?.[1];
    if (name !== undefined) hidden[decodeEntities(name)] = decodeEntities(/\bvalue="([^"]*)"/i.exec(input)?.[1] ?? '');
  }
  return { action, hidden };
}

/**
 * A person signs in: opens the authorization URL, presses `Approve` on the
 * broker's consent page, signs in with name and password on Forgejo's login
 * form, and is sent back to the client's redirect URI.
 */
export async function approveAndSignIn(
  browser: TestBrowser,
  authorizationUrl: URL,
  user: StandinUser,
  redirectUri = CLIENT_REDIRECT,
): Promise<BrowserSignIn> {
  const first = await browser.follow(authorizationUrl.href, redirectUri);
  if (first.kind === 'redirect') return { consentHtml: undefined, loginFormUrl: undefined, callback: first.params };
  assert.equal(first.response.status, 200, `authorization page:\n${first.html}`);
  const consentHtml = first.html;
  assert.match(consentHtml, /<button type="submit" name="decision" value="approve">Approve<\/button>/);
  assert.match(consentHtml, /<button type="submit" name="decision" value="deny">Deny<\/button>/);
  const consent = postForm(consentHtml, first.url);
  const afterConsent = await browser.follow(consent.action, redirectUri, { form: { ...consentFields(consentHtml), decision: 'approve' } });
  if (afterConsent.kind === 'redirect') return { consentHtml, loginFormUrl: undefined, callback: afterConsent.params };
  // Forgejo's login form.
  assert.equal(afterConsent.response.status, 200, `after consent:\n${afterConsent.html}`);
  assert.match(afterConsent.html, /Sign in to Forgejo/);
  const login = postForm(afterConsent.html, afterConsent.url);
  const back = await browser.follow(login.action, redirectUri, {
    form: { ...login.hidden, user_name: user.login, password: user.password },
  });
  if (back.kind !== 'redirect')
    throw new Error(`sign-in did not come back to the client (HTTP ${back.response.status} at ${back.url}):\n${back.html}`);
  return { consentHtml, loginFormUrl: afterConsent.url, callback: back.params };
}

export interface Connected {
  readonly client: Client;
  readonly transport: StreamableHTTPClientTransport;
}

/** A Client on a fresh transport with the provider; the SDK adds the bearer token and handles 401s. */
export async function connect(
  mcpUrl: URL,
  provider: E2EOAuthProvider,
  mode: VersionNegotiationMode = 'legacy',
  transportOptions: Pick<StreamableHTTPClientTransportOptions, 'fetch' | 'reconnectionScheduler'> = {},
): Promise<Connected> {
  const transport = new StreamableHTTPClientTransport(mcpUrl, { ...transportOptions, authProvider: provider });
  const client = new Client(CLIENT_INFO, { versionNegotiation: { mode } });
  await client.connect(transport);
  return { client, transport };
}

/**
 * The whole interactive sign-in as an MCP host does it with the SDK: connect
 * (401 → discovery → registration or CIMD → authorization URL →
 * UnauthorizedError), the person in the browser, `finishAuth` with the
 * callback's parameters (code and iss) on that transport, then connect again.
 */
export async function signInWithSdk(
  mcpUrl: URL,
  provider: E2EOAuthProvider,
  browser: TestBrowser,
  user: StandinUser,
  mode: VersionNegotiationMode = 'legacy',
): Promise<Connected & { readonly signIn: BrowserSignIn }> {
  const transport = new StreamableHTTPClientTransport(mcpUrl, { authProvider: provider });
  const client = new Client(CLIENT_INFO, { versionNegotiation: { mode } });
  const before = provider.authorizations.length;
  await assert.rejects(client.connect(transport), (error: unknown) => {
    assert.ok(
      error instanceof UnauthorizedError || (error instanceof Error && error.cause instanceof UnauthorizedError),
      `expected UnauthorizedError, got ${String(error)}`,
    );
    return true;
  });
  await client.close();
  assert.equal(provider.authorizations.length, before + 1, 'the SDK asked for the browser once');
  const authorizationUrl = provider.authorizations.at(-1) as URL;
  const signIn = await approveAndSignIn(browser, authorizationUrl, user);
  assert.equal(signIn.callback.get('error'), null, `authorization error: ${signIn.callback.get('error_description') ?? ''}`);
  assert.equal(signIn.callback.get('state'), authorizationUrl.searchParams.get('state'));
  await transport.finishAuth(signIn.callback);
  return { ...(await connect(mcpUrl, provider, mode)), signIn };
}

/** The text of a tool result's content blocks, joined. */
export function text(result: unknown): string {
  return (result as { content?: { text?: string }[] }).content?.map((block) => block.text ?? '').join('') ?? '';
}

function toolText(result: Awaited<ReturnType<Client['callTool']>>): string {
  assert.notEqual(result.isError, true, `tool error: ${JSON.stringify(result.content)}`);
  const first = result.content[0];
  if (first?.type !== 'text') throw new Error(`tool answered no text: ${JSON.stringify(result.content)}`);
  return first.text;
}

/** `get_me` of the stand-in child: the Forgejo user its token belongs to. */
export async function getMe(client: Client): Promise<{ login: string; id: number }> {
  return JSON.parse(toolText(await client.callTool({ name: 'get_me', arguments: {} }))) as { login: string; id: number };
}

/** `token_fingerprint` of the stand-in child: sha256 of its Forgejo token, first 12 hex chars. */
export async function forgejoTokenFingerprint(client: Client): Promise<string> {
  return toolText(await client.callTool({ name: 'token_fingerprint', arguments: {} }));
}

/** Ends the MCP session (DELETE) and closes the client. */
export async function disconnect(connected: Connected): Promise<void> {
  await connected.transport.terminateSession().catch(() => undefined);
  await connected.client.close();
}

// --- third-party clients and Chromium
/**
 * The third-party MCP clients the real-client tests drive, installed by the
 * separate npm project `clients/` (`(cd clients && npm ci)`), and the means
 * to run them: bounded child processes that never outlive a test, and
 * Debian's Chromium for browser steps.
 */

/** The repository root (this file runs as dist/test/support/mcp-clients.js). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const CLIENTS_BIN = fileURLToPath(new URL('../../../clients/node_modules/.bin/', import.meta.url));
export const CHROMIUM = '/usr/bin/chromium';

/** Path of a client's executable in `clients/node_modules/.bin`. */
export function clientBinary(name: string): string {
  return `${CLIENTS_BIN}${name}`;
}

/** A `skip` value for node:test: false when every named client is installed, else why not. */
export function skipUnlessInstalled(...names: string[]): string | false {
  const missing = names.filter((name) => !existsSync(clientBinary(name)));
  return skipIfMissing(missing.length === 0 ? false : `${missing.join(', ')} not installed: run (cd clients && npm ci)`);
}

export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

export interface Finished {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A child process in its own process group, so a stop reaches the helpers it started too. */
export class ClientProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<Finished>;

  constructor(command: string, args: readonly string[], options: RunOptions & { stdin?: 'pipe' | 'ignore' } = {}) {
    this.child = spawn(command, args, {
      env: options.env ?? process.env,
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
      detached: true,
    });
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.stdout += chunk));
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolve, reject) => {
      this.child.once('error', reject);
      this.child.once('close', (code, signal) => resolve({ code, signal, stdout: this.stdout, stderr: this.stderr }));
    });
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM to the whole group, SIGKILL after `graceMs`; resolves when the process has exited. */
  async stop(graceMs = 3000): Promise<void> {
    if (!this.running) {
      await this.exited.catch(() => undefined);
      return;
    }
    this.signalGroup('SIGTERM');
    const timer = setTimeout(() => this.signalGroup('SIGKILL'), graceMs);
    try {
      await this.exited.catch(() => undefined);
    } finally {
      clearTimeout(timer);
      // Helpers of the client (its own children) go with it.
      this.signalGroup('SIGKILL');
    }
  }

  private signalGroup(signal: NodeJS.Signals): void {
    const pid = this.child.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {
      // already gone
    }
  }
}

/** Runs a command to its end, killed (with its group) if it takes longer than `limitMs`. */
export async function runToEnd(command: string, args: readonly string[], limitMs: number, options: RunOptions = {}): Promise<Finished> {
  const run = new ClientProcess(command, args, options);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    void run.stop(1000);
  }, limitMs);
  try {
    const finished = await run.exited;
    if (timedOut)
      throw new Error(
        `${command} ${args.join(' ')} did not finish within ${limitMs} ms\nstdout: ${finished.stdout}\nstderr: ${finished.stderr}`,
      );
    return finished;
  } finally {
    clearTimeout(timer);
    await run.stop(1000);
  }
}

/** Headless Chromium as the other browser tests launch it. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}

/** The HTTP status an SDK error carries (SdkHttpError), if any. */
export function httpStatus(error: unknown): number | undefined {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 3; cause = cause.cause, depth++) {
    const status = (cause as { status?: unknown }).status;
    if (typeof status === 'number') return status;
  }
  return undefined;
}
