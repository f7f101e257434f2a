import type { JSONRPCMessage, JSONRPCRequest } from '@modelcontextprotocol/server';
import { isJSONRPCNotification, isJSONRPCRequest } from '@modelcontextprotocol/server';
import type { ForgejoAccess, ForgejoCredentials } from '../../src/auth/principal.js';
import { BrokerError } from '../../src/errors/errors.js';
import type { Child, ChildExit, ChildSpec, SpawnFunc } from '../../src/pool/child.js';

/** What a child answers by itself, per method; a method not here waits for the test to answer. */
const DEFAULT_ANSWERS: Record<string, (params: JSONRPCRequest['params']) => Record<string, unknown>> = {
  initialize: (params) => ({
    protocolVersion: params?.protocolVersion,
    capabilities: { logging: {}, tools: { listChanged: true }, resources: { subscribe: true } },
    serverInfo: { name: 'in-memory', version: '1' },
  }),
  ping: () => ({}),
  'logging/setLevel': () => ({}),
  'resources/subscribe': () => ({}),
  'resources/unsubscribe': () => ({}),
  'tools/list': () => ({ tools: [] }),
};

/**
 * A child without a process, in the spirit of the seed's fakeBackend: it
 * records what it is sent, answers the handshake and bookkeeping methods by
 * itself, and lets the test answer everything else, speak first, or exit.
 */
export class InMemoryChild implements Child {
  private static nextPid = 1;
  readonly pid = InMemoryChild.nextPid++;
  onmessage: ((message: JSONRPCMessage, lineLength: number) => void) | undefined;
  readonly exited: Promise<ChildExit>;
  /** Everything sent to this child, in order. */
  readonly received: JSONRPCMessage[] = [];
  /** Methods this child leaves unanswered although it would answer them by itself. */
  readonly holding = new Set<string>();
  private exit: ((exit: ChildExit) => void) | undefined;
  private gone = false;
  private readonly waiters: { match: (message: JSONRPCMessage) => boolean; resolve: (message: JSONRPCMessage) => void }[] = [];

  constructor(readonly spec: ChildSpec) {
    this.exited = new Promise((resolve) => (this.exit = resolve));
  }

  get stopped(): boolean {
    return this.gone;
  }

  send(message: JSONRPCMessage): boolean {
    if (this.gone) return false;
    this.received.push(message);
    for (const waiter of [...this.waiters]) {
      if (!waiter.match(message)) continue;
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve(message);
    }
    if (isJSONRPCRequest(message) && !this.holding.has(message.method)) {
      const answer = DEFAULT_ANSWERS[message.method];
      // Answered on a later turn, as a process would.
      if (answer !== undefined) queueMicrotask(() => this.say({ jsonrpc: '2.0', id: message.id, result: answer(message.params) }));
    }
    return true;
  }

  /** The next message sent to this child with that method (or the next answer, for 'response'), including one already received. */
  nextMessage(method: string, after = 0): Promise<JSONRPCMessage> {
    const match = (message: JSONRPCMessage): boolean => ('method' in message ? message.method === method : method === 'response');
    const already = this.received.slice(after).find(match);
    if (already !== undefined) return Promise.resolve(already);
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }

  /** The requests this child received, by method. */
  requests(method: string): JSONRPCRequest[] {
    return this.received.filter((message): message is JSONRPCRequest => isJSONRPCRequest(message) && message.method === method);
  }

  /** Methods of everything received, requests and notifications. */
  methods(): string[] {
    return this.received.flatMap((message) => (isJSONRPCRequest(message) || isJSONRPCNotification(message) ? [message.method] : []));
  }

  /** The child writes a message. */
  say(message: JSONRPCMessage): void {
    if (!this.gone) this.onmessage?.(message, JSON.stringify(message).length);
  }

  /** The child crashes or exits by itself. */
  crash(code = 1): void {
    this.end({ code, signal: null });
  }

  stop(): Promise<ChildExit> {
    this.end({ code: 0, signal: null });
    return this.exited;
  }

  private end(exit: ChildExit): void {
    if (this.gone) return;
    this.gone = true;
    this.exit?.(exit);
  }
}

/** The seed's spawnerControl: a SpawnFunc minting in-memory children, and the children it minted. */
export class InMemorySpawner {
  readonly children: InMemoryChild[] = [];
  /** Set to make the next spawns fail. */
  failure: Error | undefined;
  private readonly waiting: ((child: InMemoryChild) => void)[] = [];

  readonly spawn: SpawnFunc = (spec) => {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const child = new InMemoryChild(spec);
    this.children.push(child);
    for (const resolve of this.waiting.splice(0)) resolve(child);
    return Promise.resolve(child);
  };

  /** The n-th child spawned (from 0), once it is. */
  child(n: number): Promise<InMemoryChild> {
    const existing = this.children[n];
    if (existing !== undefined) return Promise.resolve(existing);
    return new Promise((resolve) => this.waiting.push(() => void this.child(n).then(resolve)));
  }
}

/** Forgejo credentials the test sets per user; a user without one is refused. */
export class FakeCredentials implements ForgejoCredentials {
  readonly tokens = new Map<string, string>();
  /** Users whose next access() call fails with an outcome the broker cannot use (not a refusal). */
  readonly failing = new Set<string>();

  access(userId: string): Promise<ForgejoAccess> {
    if (this.failing.has(userId)) return Promise.reject(new Error('Forgejo did not answer'));
    const token = this.tokens.get(userId);
    if (token === undefined) return Promise.reject(new BrokerError('credential_revoked', 'no credential'));
    return Promise.resolve({ accessToken: token, expiresAt: Date.now() + 3_600_000 });
  }

  refused(userId: string): Promise<ForgejoAccess> {
    return this.access(userId);
  }
}
