import { randomBytes } from 'node:crypto';
import { link, mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

import { BrokerError } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';

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
 * The key that seals Forgejo credentials: the configured one (BROKER_ENCRYPTION_KEY,
 * parsed with the configuration) when given, otherwise `<dataDir>/encryption.key`,
 * created on first start with mode 0600 (an existing one readable by others is
 * narrowed to 0600). Losing that file loses every stored credential (users sign in again).
 */
export async function loadEncryptionKey(dataDir: string, configured: Buffer | undefined, logger: Logger): Promise<Buffer> {
  if (configured !== undefined) return configured;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, ENCRYPTION_KEY_FILE);
  // Read first: a start with the key in place must not need a byte of free disk.
  let text = await readKeyFile(path, logger);
  if (text === undefined) {
    const generated = randomBytes(32);
    if (await publishKeyFile(dataDir, path, generated)) return generated;
    text = (await readKeyFile(path, logger)) ?? '';
  }
  const key = parseEncryptionKey(text);
  if (key === undefined) {
    const why =
      text.trim() === ''
        ? 'is empty (left by an interrupted first start of an older version; nothing was sealed with it, so it may be deleted)'
        : 'does not hold a 32-byte key';
    throw new BrokerError('internal', `${path} ${why}`);
  }
  return key;
}

async function readKeyFile(path: string, logger: Logger): Promise<string | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if (isErrnoException(error) && error.code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    await restrictKeyFile(handle, path, logger);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

/**
 * Narrows a key file others may read (an earlier version, or an operator's
 * copy, left it wider) to 0600, through the open handle so the file narrowed
 * is the file read. A file the operator mounted read-only or owns as another
 * user is theirs to protect: the broker starts and says so.
 */
async function restrictKeyFile(handle: FileHandle, path: string, logger: Logger): Promise<void> {
  const mode = (await handle.stat()).mode & 0o777;
  if ((mode & 0o077) === 0) return;
  try {
    await handle.chmod(0o600);
  } catch (error) {
    if (!(isErrnoException(error) && (error.code === 'EROFS' || error.code === 'EPERM'))) throw error;
    logger.warn(
      { event: 'encryption_key_file_too_open', path, mode: mode.toString(8).padStart(4, '0'), code: error.code, err: error.message },
      'the encryption key file is readable by other users and could not be narrowed to 0600',
    );
  }
}

/**
 * Writes the key to a temporary file (mode 0600), flushes it, and links it into place, so
 * `path` either does not exist or holds the whole key: a full disk or a crash
 * midway leaves no empty key to block every later start. A link, not a
 * rename: it fails when `path` exists, so two first starts racing never
 * replace a key the other may already seal with. False when one was there.
 */
async function publishKeyFile(dataDir: string, path: string, key: Buffer): Promise<boolean> {
  const temporary = join(dataDir, `.${ENCRYPTION_KEY_FILE}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(temporary, 'wx', 0o600);
    try {
      await handle.writeFile(key.toString('base64') + '\n', 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(temporary, path);
    } catch (error) {
      if (isErrnoException(error) && error.code === 'EEXIST') return false;
      throw error;
    }
    await syncDirectory(dataDir);
    return true;
  } finally {
    await rm(temporary, { force: true });
  }
}

/** Makes a new directory entry durable (the file's own fsync does not cover its name). */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isErrnoException(value: unknown): value is NodeJS.ErrnoException {
  return value instanceof Error && 'code' in value;
}
