import type { JSONRPCNotification, JSONRPCRequest } from '@modelcontextprotocol/server';
import type { ClientResponse } from './request-sink.js';
import { isErrorResponse } from '../jsonrpc/messages.js';

/** The client state a child has been told, to compare with what clients set since. */
interface Told {
  readonly logLevel: JSONRPCRequest['params'] | undefined;
  readonly subscriptions: ReadonlySet<string>;
}

/** Catch-up rounds after the first replay; clients changing state faster than this are not a real case. */
const MAX_STATE_SYNC_ROUNDS = 4;

function sameState(a: Told, b: Told): boolean {
  return (
    JSON.stringify(a.logLevel) === JSON.stringify(b.logLevel) &&
    a.subscriptions.size === b.subscriptions.size &&
    [...a.subscriptions].every((uri) => b.subscriptions.has(uri))
  );
}

/** How the replay reaches the new child: a request of the broker's own, and a notification. */
export interface ReplayTarget {
  request(method: string, params: JSONRPCRequest['params']): Promise<ClientResponse>;
  notify(notification: JSONRPCNotification): void;
}

/**
 * What the clients of a channel told its child and a replacement child must
 * be told again: the initialize (and `notifications/initialized`), the log
 * level and the resource subscriptions.
 */
export class ClientState {
  #initialize: JSONRPCRequest | undefined;
  #initialized = false;
  #negotiatedVersion: string | undefined;
  #logLevel: JSONRPCRequest['params'] | undefined;
  readonly #subscriptions = new Set<string>();

  /** The protocol version the child agreed to at initialize, once known. */
  get protocolVersion(): string | undefined {
    return this.#negotiatedVersion;
  }

  /** A request on its way to the child: the initialize is kept as sent. */
  requested(request: JSONRPCRequest): void {
    if (request.method === 'initialize') this.#initialize = request;
  }

  notified(notification: JSONRPCNotification): void {
    if (notification.method === 'notifications/initialized') this.#initialized = true;
  }

  /** The child answered a request with success: remember what it changed. */
  succeeded(method: string, params: JSONRPCRequest['params'], result: unknown): void {
    switch (method) {
      case 'initialize':
        this.#negotiatedVersion = (result as { protocolVersion?: string } | undefined)?.protocolVersion;
        break;
      case 'logging/setLevel':
        this.#logLevel = params;
        break;
      case 'resources/subscribe':
        if (typeof params?.uri === 'string') this.#subscriptions.add(params.uri);
        break;
      case 'resources/unsubscribe':
        if (typeof params?.uri === 'string') this.#subscriptions.delete(params.uri);
        break;
    }
  }

  /**
   * Tells a new child what the clients told the first: the original
   * initialize, then the log level and resource subscriptions, again until
   * it has caught up with changes clients made on the old child meanwhile.
   */
  async replay(target: ReplayTarget): Promise<void> {
    const initialize = this.#initialize;
    if (initialize === undefined) return;
    const answer = await target.request(initialize.method, initialize.params);
    if (isErrorResponse(answer)) throw new Error(`initialize failed: ${answer.error.message}`);
    if (this.#initialized) target.notify({ jsonrpc: '2.0', method: 'notifications/initialized' });
    let told: Told = { logLevel: undefined, subscriptions: new Set() };
    for (let round = 0; round < MAX_STATE_SYNC_ROUNDS && !sameState(told, this.#current()); round++) {
      const wanted = this.#current();
      if (JSON.stringify(wanted.logLevel) !== JSON.stringify(told.logLevel) && wanted.logLevel !== undefined) {
        await target.request('logging/setLevel', wanted.logLevel);
      }
      for (const uri of wanted.subscriptions) if (!told.subscriptions.has(uri)) await target.request('resources/subscribe', { uri });
      for (const uri of told.subscriptions) if (!wanted.subscriptions.has(uri)) await target.request('resources/unsubscribe', { uri });
      told = wanted;
    }
  }

  #current(): Told {
    return { logLevel: this.#logLevel, subscriptions: new Set(this.#subscriptions) };
  }
}
