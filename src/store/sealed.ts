import { open, seal } from './cipher.js';
import type { ForgejoTokens } from './store.js';

/**
 * The sealed forms every backend stores, in one place so that SQLite and
 * PostgreSQL hold byte-compatible values. Each is bound to its row through
 * the cipher's context: a sealed value copied to another user or state does
 * not open.
 */

export function sealForgejoTokens(key: Buffer, userId: string, tokens: ForgejoTokens): string {
  const plaintext = JSON.stringify({ a: tokens.accessToken, r: tokens.refreshToken, e: tokens.expiresAt });
  return seal(key, plaintext, credentialContext(userId));
}

export function openForgejoTokens(key: Buffer, userId: string, sealed: string): ForgejoTokens {
  const opened = JSON.parse(open(key, sealed, credentialContext(userId))) as { a: string; r: string; e: number };
  return { accessToken: opened.a, refreshToken: opened.r, expiresAt: opened.e };
}

export function sealCodeVerifier(key: Buffer, stateHash: string, codeVerifier: string): string {
  return seal(key, codeVerifier, verifierContext(stateHash));
}

export function openCodeVerifier(key: Buffer, stateHash: string, sealed: string): string {
  return open(key, sealed, verifierContext(stateHash));
}

function credentialContext(userId: string): string {
  return `forgejo-credential:${userId}`;
}

function verifierContext(stateHash: string): string {
  return `pkce:${stateHash}`;
}
