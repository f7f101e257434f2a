import type { ServerResponse } from 'node:http';
import type { JSONRPCMessage } from '@modelcontextprotocol/server';
import { passedBytes, writeAll, byteLength } from '../pool/raw-answer.js';
import type { ClientResponse } from '../pool/request-sink.js';

const SSE_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache, no-transform',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
};

/**
 * One modern request's HTTP response: a single JSON object when the answer
 * is all there is, an SSE stream as soon as a notification precedes it.
 */
export class ResponseWriter {
  #streaming = false;
  #done = false;
  #keepAlive: NodeJS.Timeout | undefined;

  /** `onClientGone` runs if the client closes the connection before the final message. */
  readonly #res: ServerResponse;

  constructor(res: ServerResponse, onClientGone: () => void) {
    this.#res = res;
    res.once('close', () => {
      this.#stopKeepAlive();
      if (!this.#done) {
        this.#done = true;
        onClientGone();
      }
    });
  }

  get finished(): boolean {
    return this.#done;
  }

  /** Opens the SSE stream now (a listen stream is one from the start), with keep-alive comments. */
  openStream(keepAliveMs: number): void {
    this.#startStream();
    if (keepAliveMs > 0) {
      this.#keepAlive = setInterval(() => this.#res.write(':\n\n'), keepAliveMs);
      this.#keepAlive.unref();
    }
  }

  /** A message before the final one: switches to SSE. */
  event(message: JSONRPCMessage): void {
    if (this.#done) return;
    this.#startStream();
    this.#writeEvent(message);
  }

  /** The final message; the response ends with it. */
  final(message: JSONRPCMessage, httpStatus = 200): void {
    if (this.#done) return;
    this.#done = true;
    this.#stopKeepAlive();
    if (this.#streaming) {
      this.#writeEvent(message);
      this.#res.end();
      return;
    }
    const bytes = passedBytes(message as ClientResponse);
    if (bytes !== undefined) {
      this.#res.writeHead(httpStatus, { 'content-type': 'application/json', 'content-length': byteLength(bytes) });
      writeAll(this.#res, bytes);
      this.#res.end();
      return;
    }
    const body = JSON.stringify(message);
    this.#res.writeHead(httpStatus, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    this.#res.end(body);
  }

  /**
   * The JSON is its own write, not part of one template string that a large result
   * would be flattened into; corked, so the three writes leave as one.
   */
  #writeEvent(message: JSONRPCMessage): void {
    this.#res.cork();
    this.#res.write('event: message\ndata: ');
    const bytes = 'id' in message ? passedBytes(message as ClientResponse) : undefined;
    if (bytes === undefined) this.#res.write(JSON.stringify(message));
    else writeAll(this.#res, bytes);
    this.#res.write('\n\n');
    this.#res.uncork();
  }

  #startStream(): void {
    if (this.#streaming) return;
    this.#streaming = true;
    this.#res.writeHead(200, SSE_HEADERS);
    this.#res.flushHeaders();
  }

  #stopKeepAlive(): void {
    if (this.#keepAlive !== undefined) clearInterval(this.#keepAlive);
    this.#keepAlive = undefined;
  }
}
