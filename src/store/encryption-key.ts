import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { BrokerError } from '../errors/errors.js';

export const ENCRYPTION_KEY_FILE = 'encryption.key';

/**
 * Parses a configured key: 32 bytes as 64 hex digits or as base64
 * (standard or URL-safe). Undefined for anything else.
 */
export function parseEncryptionKey(text: string): Buffer | undefined {
  const trimmed = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) return Buffer.from(trimmed, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(trimmed)) {
    const key = Buffer.from(trimmed.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (key.length === 32) return key;
  }
  return undefined;
}

/**
 * The key that seals Forgejo credentials: the configured one when given,
 * otherwise `<dataDir>/encryption.key`, created on first start with mode 0600.
 * Losing that file loses every stored credential (users sign in again).
 */
export async function loadEncryptionKey(dataDir: string, configured: string | undefined): Promise<Buffer> {
  if (configured !== undefined && configured.trim() !== '') {
    const key = parseEncryptionKey(configured);
    if (key === undefined) {
      throw new BrokerError('bad_request', 'BROKER_ENCRYPTION_KEY must be 32 bytes, as 64 hex digits or base64');
    }
    return key;
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, ENCRYPTION_KEY_FILE);
  try {
    // 'wx' fails if the file exists, so two starts racing never overwrite a key.
    const handle = await open(path, 'wx', 0o600);
    try {
      const key = randomBytes(32);
      await handle.writeFile(key.toString('base64') + '\n', 'utf8');
      await handle.sync();
      return key;
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (!isErrnoException(error) || error.code !== 'EEXIST') throw error;
  }
  const key = parseEncryptionKey(await readFile(path, 'utf8'));
  if (key === undefined) throw new BrokerError('internal', `${path} does not hold a 32-byte key`);
  return key;
}

function isErrnoException(value: unknown): value is NodeJS.ErrnoException {
  return value instanceof Error && 'code' in value;
}
