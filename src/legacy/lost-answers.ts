import type { IncomingMessage, ServerResponse } from 'node:http';
import { JsonRpcCode } from '../errors/jsonrpc-codes.js';
import { requestIdsOfEventId } from './event-store.js';

const LOST_MESSAGE =
  'The broker process carrying this request stopped before it answered; the request may or may not have been carried out';

/**
 * The resumption (`GET` with `Last-Event-ID`) of a POST stream whose process
 * died, arriving where its events are not: the requests the event id names
 * are answered with an error and the stream ends, so the client's calls fail
 * now instead of waiting for its own timeout (the SDK client, having lost the
 * stream, fails a call only when an answer arrives). Whether a call was
 * carried out is unknown, so it is an error and not a retry. True when
 * answered; false when the request is no such resumption.
 */
export function answerLostStream(req: IncomingMessage, res: ServerResponse): boolean {
  const header = req.headers['last-event-id'];
  const lastEventId = Array.isArray(header) ? header[0] : header;
  if (req.method !== 'GET' || lastEventId === undefined) return false;
  const ids = requestIdsOfEventId(lastEventId);
  if (ids === undefined) return false;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', 'x-accel-buffering': 'no' });
  for (const id of ids) {
    const answer = { jsonrpc: '2.0', id, error: { code: JsonRpcCode.internalError, message: LOST_MESSAGE } };
    res.write(`event: message\ndata: ${JSON.stringify(answer)}\n\n`);
  }
  res.end();
  return true;
}
