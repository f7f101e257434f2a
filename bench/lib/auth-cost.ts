/**
 * What validating a bearer token costs per request, measured on the broker's
 * own code: `BrokerAuthenticator.authenticate` over the real SQLite store the
 * running broker signed its users into (opened a second time, read-only use,
 * WAL lets it read beside the broker). There is no token cache in the broker:
 * every /mcp request hashes the token (SHA-256) and runs one indexed SELECT
 * joining access token, grant, user and Forgejo credential. "Hot" repeats one
 * token (SQLite's page cache and the prepared statement warm: what every
 * request of a busy client pays); "rotating" cycles over every signed-in
 * user's token; "unknown" is a token the store does not know; "cold" is the
 * first call on a freshly opened store (statement preparation, first page
 * reads), the most a request can pay.
 */
import { randomBytes } from 'node:crypto';
import { silentLogger } from '../../src/log/logger.js';
import { BrokerAuthenticator } from '../../src/oauth/authenticator.js';
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
}

async function openAuthenticator(dataDir: string, publicUrl: string): Promise<{ store: Store; authenticator: BrokerAuthenticator }> {
  const store = await openSqliteStore({ dataDir, encryptionKey: await loadEncryptionKey(dataDir, undefined, silentLogger()) });
  const authenticator = new BrokerAuthenticator({
    grants: store.grants,
    resource: `${publicUrl}/mcp`,
    resourceMetadataUrl: `${publicUrl}/.well-known/oauth-protected-resource/mcp`,
  });
  return { store, authenticator };
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
    figures.push(await batches('hot (one token, repeated)', batchCount, batchSize, () => check(token)));
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
  return figures;
}
