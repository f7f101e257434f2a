/**
 * What validating a bearer token costs per request, measured on the broker's
 * own code: `BrokerAuthenticator.authenticate` over the real SQLite store the
 * running broker signed its users into (opened a second time, read-only use,
 * WAL lets it read beside the broker). Without the token cache, every /mcp
 * request hashes the token (SHA-256) and runs one indexed SELECT joining
 * access token, grant, user and Forgejo credential; with it (as the broker
 * runs, kept fresh by a revocation follower on the same store) a hot request
 * hashes the token and finds it in memory. Store reads are counted. "Hot" repeats one
 * token (SQLite's page cache and the prepared statement warm: what every
 * request of a busy client pays); "rotating" cycles over every signed-in
 * user's token; "unknown" is a token the store does not know; "cold" is the
 * first call on a freshly opened store (statement preparation, first page
 * reads), the most a request can pay.
 */
import { randomBytes } from 'node:crypto';
import { REVOCATION_POLL_MS, TOKEN_CACHE_ENTRIES } from '../../src/config/defaults.js';
import { silentLogger } from '../../src/log/logger.js';
import { BrokerAuthenticator } from '../../src/oauth/authenticator.js';
import { TokenCache } from '../../src/oauth/token-cache.js';
import { RevocationFollower } from '../../src/revocation/follower.js';
import { sha256Hex } from '../../src/oauth/tokens.js';
import { loadEncryptionKey } from '../../src/store/encryption-key.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';
import { median } from './stats.js';

export interface AuthFigure {
  readonly name: string;
  /** Median over batches of the mean cost per call, microseconds. */
  readonly perCallUs: number;
  readonly calls: number;
  /** Store reads of access tokens per call, where counted. */
  readonly storeReadsPerCall?: number;
}

async function openAuthenticator(
  dataDir: string,
  publicUrl: string,
  cache?: TokenCache,
): Promise<{ store: Store; authenticator: BrokerAuthenticator; reads: () => number }> {
  const store = await openSqliteStore({ dataDir, encryptionKey: await loadEncryptionKey(dataDir, undefined, silentLogger()) });
  let reads = 0;
  const { grants } = store;
  const find = grants.findAccessToken.bind(grants);
  grants.findAccessToken = (tokenHash) => {
    reads++;
    return find(tokenHash);
  };
  const authenticator = new BrokerAuthenticator({
    grants,
    resource: `${publicUrl}/mcp`,
    resourceMetadataUrl: `${publicUrl}/.well-known/oauth-protected-resource/mcp`,
    ...(cache === undefined ? {} : { cache }),
  });
  return { store, authenticator, reads: () => reads };
}

async function batches(name: string, batchCount: number, batchSize: number, call: (i: number) => unknown): Promise<AuthFigure> {
  const perCall: number[] = [];
  let i = 0;
  for (let b = 0; b < batchCount; b++) {
    const t0 = performance.now();
    for (let k = 0; k < batchSize; k++) {
      const result = call(i++);
      if (result instanceof Promise) await result;
    }
    perCall.push(((performance.now() - t0) * 1000) / batchSize);
  }
  return { name, perCallUs: median(perCall), calls: batchCount * batchSize };
}

export async function measureAuthCost(
  dataDir: string,
  publicUrl: string,
  tokens: readonly string[],
  quick: boolean,
): Promise<AuthFigure[]> {
  const batchCount = quick ? 3 : 7;
  const batchSize = quick ? 500 : 2_000;
  const figures: AuthFigure[] = [];

  const cold: number[] = [];
  for (let i = 0; i < (quick ? 2 : 5); i++) {
    const { store, authenticator } = await openAuthenticator(dataDir, publicUrl);
    const t0 = performance.now();
    const result = await authenticator.authenticate(tokens[i % tokens.length] as string);
    cold.push((performance.now() - t0) * 1000);
    await store.close();
    if ('error' in result) throw new Error(`the bench's own token was refused: ${result.description}`);
  }
  figures.push({ name: 'cold (first call on a freshly opened store)', perCallUs: median(cold), calls: cold.length });

  const { store, authenticator } = await openAuthenticator(dataDir, publicUrl);
  try {
    const token = tokens[0] as string;
    const check = async (bearer: string): Promise<void> => {
      const result = await authenticator.authenticate(bearer);
      if ('error' in result) throw new Error(`token refused: ${result.description}`);
    };
    await batches('warm-up', 1, batchSize, () => check(token));
    figures.push(await batches('hot, no cache (one token, repeated)', batchCount, batchSize, () => check(token)));
    figures.push(
      await batches(`rotating (${tokens.length} users' tokens in turn)`, batchCount, batchSize, (i) =>
        check(tokens[i % tokens.length] as string),
      ),
    );
    const unknown = `fmb_at_${randomBytes(32).toString('base64url')}`;
    figures.push(
      await batches('unknown token (refused)', batchCount, batchSize, async () => {
        const result = await authenticator.authenticate(unknown);
        if (!('error' in result)) throw new Error('an unknown token was accepted');
      }),
    );
    figures.push(await batches('of which SHA-256 of the token', batchCount, batchSize * 5, () => sha256Hex(token)));
  } finally {
    await store.close();
  }
  figures.push(...(await cachedCost(dataDir, publicUrl, tokens, batchCount, batchSize)));
  return figures;
}

/** The same with the broker's token cache, kept fresh by a revocation follower reading this store's log as the broker's does. */
async function cachedCost(
  dataDir: string,
  publicUrl: string,
  tokens: readonly string[],
  batchCount: number,
  batchSize: number,
): Promise<AuthFigure[]> {
  const cache = new TokenCache({ maxEntries: TOKEN_CACHE_ENTRIES, maxStalenessMs: 3 * REVOCATION_POLL_MS });
  const { store, authenticator, reads } = await openAuthenticator(dataDir, publicUrl, cache);
  const follower = new RevocationFollower({
    revocations: store.revocations,
    end: () => Promise.resolve({ legacy: 0, modern: 0 }),
    log: silentLogger(),
    tokens: cache,
    intervalMs: REVOCATION_POLL_MS,
  });
  await follower.start();
  try {
    const check = async (bearer: string): Promise<void> => {
      const result = await authenticator.authenticate(bearer);
      if ('error' in result) throw new Error(`token refused: ${result.description}`);
    };
    const token = tokens[0] as string;
    const figures: AuthFigure[] = [];
    await batches('warm-up', 1, batchSize, (i) => check(tokens[i % tokens.length] as string));
    for (const [name, pick] of [
      ['hot, cached (one token, repeated)', () => token],
      [`rotating, cached (${tokens.length} users' tokens in turn)`, (i: number) => tokens[i % tokens.length] as string],
    ] as const) {
      const before = reads();
      const figure = await batches(name, batchCount, batchSize, (i) => check(pick(i)));
      figures.push({ ...figure, storeReadsPerCall: (reads() - before) / figure.calls });
    }
    return figures;
  } finally {
    follower.stop();
    await store.close();
  }
}
