import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { Agent, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';

/** Who forwarded a request, and the proof that it is one of the fleet. */
const FORWARDED_BY = 'x-forgejo-mcp-broker-forwarded-by';
const FORWARDED_AT = 'x-forgejo-mcp-broker-forwarded-at';
const FORWARDED_SIGNATURE = 'x-forgejo-mcp-broker-forwarded-signature';
/** On a refusal by a replica that is stopping: the forwarding replica serves the request as if that one were gone. */
export const STOPPING_HEADER = 'x-forgejo-mcp-broker-stopping';
/** A forwarded request older than this (clock skew between replicas included) is refused. */
const MAX_FORWARD_AGE_MS = 60_000;

/** Hop-by-hop headers (RFC 9110 §7.6.1) are the connection's, not the request's. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

/** What a request tells about being forwarded to this replica. */
export type ForwardedMark = { readonly kind: 'none' } | { readonly kind: 'valid'; readonly by: string } | { readonly kind: 'invalid' };

/**
 * Forwarding between replicas: a request that belongs to another replica
 * (its legacy session, its parked call, its share of the users) goes there
 * over HTTP, streamed both ways (SSE included), a client's abort passed on.
 * The receiving replica authenticates the bearer as always; the HMAC (under
 * a key derived from the fleet's shared encryption key) only proves the mark
 * "already forwarded", so a request is forwarded once at most and never loops.
 */
export class ReplicaForwarder {
  readonly #selfId: string;
  readonly #key: Buffer;
  readonly #http = new Agent({ keepAlive: true });
  readonly #https = new HttpsAgent({ keepAlive: true });
  #calls = 0;

  constructor(selfId: string, key: Buffer) {
    this.#selfId = selfId;
    this.#key = key;
  }

  /** Whether (and by whom, authentically) this request was forwarded here. */
  mark(req: IncomingMessage, now = Date.now()): ForwardedMark {
    const by = single(req.headers[FORWARDED_BY]);
    if (by === undefined) return { kind: 'none' };
    const at = Number(single(req.headers[FORWARDED_AT]));
    const signature = single(req.headers[FORWARDED_SIGNATURE]) ?? '';
    const expected = Buffer.from(this.#sign(by, req.method ?? '', req.url ?? '', at));
    const given = Buffer.from(signature);
    const authentic = expected.length === given.length && timingSafeEqual(expected, given);
    return authentic && Math.abs(now - at) <= MAX_FORWARD_AGE_MS ? { kind: 'valid', by } : { kind: 'invalid' };
  }

  /**
   * Sends the request to the replica at `base` and streams its answer back.
   * `body` is the request body when it was read already; otherwise the
   * request is piped. Rejects (nothing written) when the replica cannot be
   * reached: the caller decides what a gone owner means.
   */
  forward(req: IncomingMessage, res: ServerResponse, base: URL, body: Buffer | undefined): Promise<void> {
    // A stopping replica waits for its forwarded calls as for its own; a GET stream lasts as long as its client.
    if (req.method === 'GET') return this.#forward(req, res, base, body);
    this.#calls++;
    return this.#forward(req, res, base, body).finally(() => this.#calls--);
  }

  /** Forwarded requests other than GET streams whose answer is not complete yet. */
  get inflight(): number {
    return this.#calls;
  }

  #forward(req: IncomingMessage, res: ServerResponse, base: URL, body: Buffer | undefined): Promise<void> {
    const target = new URL(req.url ?? '/', base);
    const at = Date.now();
    const headers: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name) && !name.startsWith('x-forgejo-mcp-broker-')) headers[name] = value;
    }
    headers[FORWARDED_BY] = this.#selfId;
    headers[FORWARDED_AT] = String(at);
    headers[FORWARDED_SIGNATURE] = this.#sign(this.#selfId, req.method ?? '', req.url ?? '', at);
    if (body !== undefined) {
      headers['content-length'] = String(body.length);
      delete headers['transfer-encoding'];
    }
    const https = target.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const outgoing = (https ? httpsRequest : httpRequest)(target, {
        method: req.method ?? 'GET',
        headers,
        agent: https ? this.#https : this.#http,
      });
      let answered = false;
      outgoing.once('error', (error) => {
        if (!answered) reject(error);
        else res.destroy(error);
      });
      outgoing.once('response', (answer) => {
        if (answer.headers[STOPPING_HEADER] !== undefined) {
          // Nothing written yet: the caller falls back as for an owner that is gone.
          answer.resume();
          reject(new Error('the replica is stopping'));
          return;
        }
        answered = true;
        const forwardedHeaders: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(answer.headers)) {
          if (value !== undefined && !HOP_BY_HOP.has(name)) forwardedHeaders[name] = value;
        }
        res.writeHead(answer.statusCode ?? 502, forwardedHeaders);
        // SSE: every event goes on as it comes. The head leaves with the first event (a POST stream's priming
        // event, there already): in one segment, a reset cannot hand the client the head and lose the event id it
        // needs to resume. A stream with nothing to send yet (a GET stream) gets its head alone.
        let relayed = false;
        answer.once('data', () => (relayed = true));
        answer.pipe(res);
        setImmediate(() => {
          if (!relayed && !res.destroyed) res.flushHeaders();
        });
        answer.once('end', () => resolve());
        // The owner died mid-answer (an SSE stream cut): the client's response is cut too, never left open
        // (pipe does not end it), so the client sees the loss and resumes or fails instead of waiting forever.
        answer.once('close', () => {
          if (!answer.complete) res.destroy();
          resolve();
        });
      });
      // The client gave up (closed its stream, aborted its call): so does the owner's request.
      res.once('close', () => {
        if (!res.writableFinished) outgoing.destroy();
        resolve();
      });
      if (body !== undefined) outgoing.end(body);
      else req.pipe(outgoing);
    });
  }

  close(): void {
    this.#http.destroy();
    this.#https.destroy();
  }

  #sign(by: string, method: string, url: string, at: number): string {
    return createHmac('sha256', this.#key).update(`${by}\n${method}\n${url}\n${at}`).digest('base64url');
  }
}

/**
 * Which replica owns a user's 2026-07-28 traffic: rendezvous hashing over the
 * live replicas, so every replica agrees without asking the store, and when
 * one comes or goes only its share of users moves.
 */
export function rendezvousOwner<T extends { readonly id: string }>(key: string, replicas: readonly T[]): T | undefined {
  if (replicas.length <= 1) return replicas[0];
  let best: T | undefined;
  let bestScore = -1n;
  for (const replica of replicas) {
    const score = createHash('sha256').update(`${replica.id}\n${key}`).digest().readBigUInt64BE(0);
    if (score > bestScore) {
      best = replica;
      bestScore = score;
    }
  }
  return best;
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
