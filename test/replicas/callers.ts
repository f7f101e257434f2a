/**
 * The clients of the replica topology: people who signed in once through
 * the balancer with the MCP SDK, and SDK clients of theirs in either era
 * that count what they saw. A caller that is told to does what the spec
 * asks of a legacy client whose session is gone: on HTTP 404 it starts a
 * new session (initialize again) and repeats the call on it, once.
 */
import assert from 'node:assert/strict';
import {
  Client,
  INTERNAL_ERROR,
  isJSONRPCRequest,
  SdkError,
  SdkErrorCode,
  StreamableHTTPClientTransport,
  UnauthorizedError,
} from '@modelcontextprotocol/client';
import type { StandinUser } from '../../src/standin/forgejo.js';
import { CLIENT_INFO, E2EOAuthProvider, getMe, httpStatus, signInWithSdk, text } from '../support/mcp-clients.js';
import { TestBrowser } from '../support/oauth.js';
import type { Topology } from './topology.js';

export type Era = 'legacy' | 'modern';

/** Every call of a caller settles within this long, or counts as hung. */
export const CALL_BOUND_MS = 10_000;
/** What the callers answer when a tool asks them (elicitation). */
export const ANSWER = 'forty-two';

/** Someone who signed in through the balancer; the SDK's OAuth provider holds their tokens. */
export interface SignedInUser {
  readonly user: StandinUser;
  readonly provider: E2EOAuthProvider;
}

/**
 * The whole interactive sign-in through the balancer (discovery,
 * registration, authorize, consent, Forgejo login, callback, token), in the
 * 2026-07-28 era, then `get_me` to see whose Forgejo token the broker holds.
 */
export async function signInThrough(topology: Topology, user: StandinUser): Promise<SignedInUser> {
  const provider = new E2EOAuthProvider({ clientName: `replicas ${user.login}` });
  const { client } = await signInWithSdk(topology.mcpUrl, provider, new TestBrowser(), user, 'auto');
  try {
    assert.equal((await getMe(client)).login, user.login);
  } finally {
    await client.close();
  }
  return { user, provider };
}

/** Sign-ins asked of a person beyond the first one each (an SDK that wants the browser again). */
export function relogins(users: readonly SignedInUser[]): number {
  return users.reduce((sum, { provider }) => sum + provider.authorizations.length - 1, 0);
}

/** What a caller saw. */
export interface CallerFigures {
  calls: number;
  ok: number;
  failed: number;
  /** HTTP 404 answers (a legacy session the broker no longer knows). */
  notFound: number;
  /** Sessions started again after the first one. */
  reinitialised: number;
  /** Calls re-issued because their response stream broke (2026-07-28). */
  reissued: number;
  /** Calls that did not settle within CALL_BOUND_MS. */
  hung: number;
  /** 401s the SDK could not get past with its refresh token. */
  unauthorized: number;
}

/** One JSON-RPC request and the replica that answered it, as the balancer said. */
export interface Answered {
  readonly method: string;
  readonly status: number;
  readonly replica: number | undefined;
}

export interface CallerOptions {
  readonly era: Era;
  /** On 404: initialize again and repeat the call once (the spec's client); else a 404 is a failure. */
  readonly reinitialiseOn404: boolean;
}

/**
 * Sessions a caller starts at most; then it gives up and its calls fail
 * without a request. A broker that loses sessions would otherwise be asked
 * for a new child on every call.
 */
const MAX_SESSIONS = 8;
/** How many of a call's requests and transport errors a caller keeps for the report. */
const TRAIL_LENGTH = 32;

export class Caller {
  readonly figures: CallerFigures = { calls: 0, ok: 0, failed: 0, notFound: 0, reinitialised: 0, reissued: 0, hung: 0, unauthorized: 0 };
  /** The first few failures' messages. */
  readonly failures: string[] = [];
  /** When each 404 arrived (Date.now()). */
  readonly notFoundAt: number[] = [];
  /** Every request the caller sent, with the replica that answered. */
  readonly answered: Answered[] = [];
  /** What the calls that hung did: their requests and the transport's errors, with when they happened. */
  readonly hungTrails: string[][] = [];
  /** The current call's requests and transport errors. */
  #trail: string[] = [];
  /** Whether the last call came back. */
  lastOk = false;
  #client: Client | undefined;
  #opens = 0;

  constructor(
    readonly name: string,
    readonly topology: Topology,
    readonly signedIn: SignedInUser,
    readonly options: CallerOptions,
  ) {}

  /** Whether it started MAX_SESSIONS sessions and has none now: its calls fail without a request. */
  get gaveUp(): boolean {
    return this.#opens >= MAX_SESSIONS && this.#client === undefined;
  }

  /** Connects (initialize, or the era probe); rejects when that fails or takes longer than the bound. */
  async open(): Promise<void> {
    await this.#closeClient();
    if (this.#opens >= MAX_SESSIONS) throw new Error(`${this.name} gave up after ${MAX_SESSIONS} sessions`);
    if (this.#opens++ > 0) this.figures.reinitialised++;
    const transport = new StreamableHTTPClientTransport(this.topology.mcpUrl, {
      authProvider: this.signedIn.provider,
      fetch: this.#recordingFetch,
    });
    const client = new Client(CLIENT_INFO, {
      capabilities: { elicitation: { form: {} } },
      versionNegotiation: { mode: this.options.era === 'modern' ? 'auto' : 'legacy' },
    });
    client.setRequestHandler('elicitation/create', () => ({ action: 'accept', content: { answer: ANSWER } }));
    // Errors of the background GET stream (its replica gone, a 404) are the SDK's to handle; calls report their own.
    client.onerror = (error) => this.#note(`transport: ${error.message}`);
    try {
      await bounded(client.connect(transport, { timeout: CALL_BOUND_MS }), `${this.name}: connect`);
    } catch (error) {
      await client.close().catch(() => undefined);
      throw error;
    }
    if (this.options.era === 'modern') failCallsOnBrokenStreams(transport);
    this.#client = client;
  }

  /** Connects as `open` does, counting a failure instead of rejecting (a later call tries again). */
  async start(): Promise<void> {
    try {
      await this.open();
    } catch (error) {
      this.#classify(error);
    }
  }

  /** `echo` once; whether it came back with its text. */
  async echo(value: string): Promise<boolean> {
    const result = await this.call(async (client) =>
      text(await client.callTool({ name: 'echo', arguments: { text: value } }, callOptions())),
    );
    if (result === undefined) return false;
    if (result === value) return true;
    this.figures.ok--;
    this.lastOk = false;
    this.#fail(`echo answered ${JSON.stringify(result)} for ${JSON.stringify(value)}`);
    return false;
  }

  /**
   * One call, counted: ok, failed, hung, or (with reinitialiseOn404) a 404
   * answered by a new session and the call repeated on it once.
   */
  async call<T>(what: (client: Client) => Promise<T>): Promise<T | undefined> {
    this.figures.calls++;
    this.lastOk = false;
    this.#trail = [];
    try {
      if (this.#client === undefined) await this.open();
      return await this.#counted(what).catch((error: unknown) => {
        // 2026-07-28: a broken response stream lost the request; the client re-issues it as a new one.
        if (!isBrokenStream(error)) throw error;
        this.figures.reissued++;
        return this.#counted(what);
      });
    } catch (error) {
      if (httpStatus(error) !== 404 || !this.options.reinitialiseOn404) {
        this.#classify(error);
        return undefined;
      }
      this.figures.notFound++;
      this.notFoundAt.push(Date.now());
      try {
        await this.open();
        return await this.#counted(what);
      } catch (retryError) {
        this.#classify(retryError);
        return undefined;
      }
    }
  }

  async #counted<T>(what: (client: Client) => Promise<T>): Promise<T> {
    const client = this.#client;
    if (client === undefined) throw new Error('not connected');
    const result = await bounded(what(client), `${this.name}: call`);
    this.figures.ok++;
    this.lastOk = true;
    return result;
  }

  #classify(error: unknown): void {
    if ((error instanceof SdkError && error.code === SdkErrorCode.RequestTimeout) || error instanceof BoundExceeded) {
      this.figures.hung++;
      this.hungTrails.push(this.#trail);
    } else if (error instanceof UnauthorizedError || httpStatus(error) === 401) this.figures.unauthorized++;
    else if (httpStatus(error) === 404) this.figures.notFound++;
    this.#fail(error instanceof Error ? `${error.name}: ${error.message}` : String(error));
    // The next call starts from a fresh connection only when the session is known gone; otherwise it goes on.
    if (httpStatus(error) === 404 && this.options.reinitialiseOn404) void this.#closeClient();
  }

  #fail(message: string): void {
    this.figures.failed++;
    if (this.failures.length < 5) this.failures.push(message.slice(0, 300));
  }

  readonly #recordingFetch: typeof fetch = async (input, init) => {
    const method = typeof init?.body === 'string' ? (/"method":"([^"]+)"/.exec(init.body)?.[1] ?? 'response') : (init?.method ?? 'GET');
    const resuming = new Headers(init?.headers).get('last-event-id');
    const what = resuming === null ? method : `${method} (resuming ${resuming})`;
    this.#note(`${what} sent`);
    let response: Response;
    try {
      response = await fetch(input, init);
    } catch (error) {
      this.#note(`${what}: ${error instanceof Error ? error.message : String(error)}`);
      throw error;
    }
    const replica = this.topology.balancer.replicaOf(response.headers);
    this.answered.push({ method, status: response.status, replica });
    this.#note(`${what}: ${response.status} from replica ${String(replica)}`);
    return response;
  };

  #note(event: string): void {
    if (this.#trail.length < TRAIL_LENGTH) this.#trail.push(`${new Date().toISOString().slice(11, 23)} ${event}`);
  }

  async #closeClient(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    await client?.close().catch(() => undefined);
  }

  /** Ends the session (DELETE) and closes the client. */
  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (client === undefined) return;
    const transport = client.transport as StreamableHTTPClientTransport | undefined;
    await bounded(transport?.terminateSession() ?? Promise.resolve(), `${this.name}: DELETE`).catch(() => undefined);
    await client.close().catch(() => undefined);
  }
}

export function callOptions(): { timeout: number } {
  return { timeout: CALL_BOUND_MS };
}

/** What `failCallsOnBrokenStreams` answers a call whose response stream ended without its answer with. */
const BROKEN_STREAM = 'the response stream ended without an answer';

function isBrokenStream(error: unknown): boolean {
  return error instanceof Error && error.message.includes(BROKEN_STREAM);
}

/**
 * What the 2026-07-28 transport asks of a client and the SDK (2.4) does not do:
 * a response stream that ends without its answer (the replica serving it died)
 * lost the request. The SDK's transport says so (`onRequestStreamEnd`) but its
 * protocol layer waits for an answer until its timeout; here the call fails at
 * once, so the caller can re-issue it.
 */
function failCallsOnBrokenStreams(transport: StreamableHTTPClientTransport): void {
  const answered = new Set<unknown>();
  const deliver = transport.onmessage;
  transport.onmessage = (message) => {
    if ('id' in message && !('method' in message)) answered.add(message.id);
    deliver?.(message);
  };
  const send = transport.send.bind(transport);
  transport.send = (message, options) => {
    if (!isJSONRPCRequest(message)) return send(message, options);
    return send(message, {
      ...options,
      onRequestStreamEnd: () => {
        options?.onRequestStreamEnd?.();
        if (answered.delete(message.id)) return;
        transport.onmessage?.({ jsonrpc: '2.0', id: message.id, error: { code: INTERNAL_ERROR, message: BROKEN_STREAM } });
      },
    });
  };
}

class BoundExceeded extends Error {
  override readonly name = 'BoundExceeded';
}

/** A watchdog on anything the SDK does: past the bound (plus a margin for its own timeout to fire first) it counts as hung. */
function bounded<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const watchdog = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new BoundExceeded(`${what} did not settle within ${CALL_BOUND_MS} ms`)), CALL_BOUND_MS + 2000);
  });
  return Promise.race([promise, watchdog]).finally(() => clearTimeout(timer));
}

/** Figures summed over callers. */
export function totals(callers: readonly Caller[]): CallerFigures {
  const sum: CallerFigures = { calls: 0, ok: 0, failed: 0, notFound: 0, reinitialised: 0, reissued: 0, hung: 0, unauthorized: 0 };
  for (const { figures } of callers) for (const key of Object.keys(sum) as (keyof CallerFigures)[]) sum[key] += figures[key];
  return sum;
}

/** `calls=… ok=… failed=…` for t.diagnostic. */
export function describeFigures(figures: CallerFigures): string {
  return Object.entries(figures)
    .map(([key, value]) => `${key}=${String(value)}`)
    .join(' ');
}

/** Which requests were answered 404 (`notifications/initialized=2 tools/call=5`), for t.diagnostic. */
export function notFoundByMethod(callers: readonly Caller[]): string {
  const counts = new Map<string, number>();
  for (const caller of callers)
    for (const request of caller.answered) if (request.status === 404) counts.set(request.method, (counts.get(request.method) ?? 0) + 1);
  return [...counts].map(([method, count]) => `${method}=${count}`).join(' ') || 'none';
}

/** The first failures of each caller that had any (and, for one with a hung call, what it last did), for assertion messages. */
export function failureReport(callers: readonly Caller[]): string {
  return callers
    .filter((caller) => caller.failures.length > 0)
    .map((caller) => {
      const failures = `${caller.name}: ${caller.failures.join(' | ')}`;
      return [failures, ...caller.hungTrails.map((trail) => `  a call that hung:\n    ${trail.join('\n    ')}`)].join('\n');
    })
    .join('\n');
}

/**
 * Callers calling `echo` in a loop, each one call at a time, until stopped.
 * Waits are on counts of calls, never on time.
 */
export class Traffic {
  #stopped = false;
  readonly #loops: Promise<void>[];

  constructor(readonly callers: readonly Caller[]) {
    this.#loops = callers.map((caller) => this.#run(caller));
  }

  async #run(caller: Caller): Promise<void> {
    for (let n = 0; !this.#stopped && !caller.gaveUp; n++) await caller.echo(`${caller.name}-${n}`);
  }

  /** Each caller's call count now. */
  mark(): number[] {
    return this.callers.map((caller) => caller.figures.calls);
  }

  /** Whether every caller made `count` calls since `mark`. */
  madeCalls(mark: readonly number[], count: number): boolean {
    return this.callers.every((caller, index) => caller.gaveUp || caller.figures.calls - (mark[index] ?? 0) >= count);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#loops);
  }
}
