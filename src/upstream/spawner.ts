import type { ForgejoCredentials } from '../auth/principal.js';
import type { Logger } from '../log/logger.js';
import type { SpawnFunc } from '../pool/child.js';
import type { UpstreamEndpoint } from './endpoint.js';
import { UpstreamSession } from './session.js';

export interface UpstreamSpawnOptions {
  /** The upstream a user's sessions go to (always the same one for a user). */
  readonly endpointFor: (userId: string) => UpstreamEndpoint;
  readonly credentials: ForgejoCredentials;
  readonly log: Logger;
  readonly stopTimeoutMs: number;
}

/** How ChildSpec names a user's modern channel (`modern:<user>`; a legacy session id never starts so). */
const MODERN_CHANNEL_PREFIX = 'modern:';

/**
 * The SpawnFunc of shared mode: a "child" is a session at the shared upstream, acting with the user's token.
 * A modern channel listens from its start: the broker keeps its tool list until the upstream says it changed.
 * A legacy session listens once its client does (`UpstreamSession.listen`), or from its handshake when its
 * client can be asked something (sampling, elicitation, roots).
 */
export function upstreamSpawner(options: UpstreamSpawnOptions): SpawnFunc {
  return (spec) =>
    Promise.resolve(
      new UpstreamSession({
        endpoint: options.endpointFor(spec.userId),
        token: spec.forgejoToken,
        refused: async (token) => (await options.credentials.refused(spec.userId, token)).accessToken,
        log: options.log.child({ sessionId: spec.sessionId, user: spec.forgejoLogin }),
        stopTimeoutMs: options.stopTimeoutMs,
        listenFromStart: spec.sessionId.startsWith(MODERN_CHANNEL_PREFIX),
      }),
    );
}
