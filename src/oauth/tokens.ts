import { createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

import { open, seal } from '../store/cipher.js';

/**
 * Broker secrets are 256-bit random values, base64url. The prefix names what
 * a leaked string is (and lets secret scanners find it); it carries no meaning.
 */
export function randomToken(prefix = ''): string {
  return prefix + randomBytes(32).toString('base64url');
}

/** What the store keeps instead of a secret. */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

/** Compares two hex hashes (or other equal-shape strings) in constant time. */
export function equalHashes(a: string, b: string): boolean {
  const left = Buffer.from(a, 'utf8');
  const right = Buffer.from(b, 'utf8');
  return left.length === right.length && timingSafeEqual(left, right);
}

/** RFC 7636 §4.1: 43 to 128 unreserved characters. */
const CODE_VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;
/** An S256 challenge is a base64url SHA-256: exactly 43 characters. */
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;

export function isCodeVerifier(value: string): boolean {
  return CODE_VERIFIER.test(value);
}

export function isS256Challenge(value: string): boolean {
  return S256_CHALLENGE.test(value);
}

/** RFC 7636 §4.6: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge. */
export function verifiesS256(codeVerifier: string, codeChallenge: string): boolean {
  const computed = createHash('sha256').update(codeVerifier, 'ascii').digest('base64url');
  return equalHashes(computed, codeChallenge);
}

/**
 * The pair issued for a refresh token is kept for the retry grace period,
 * sealed under a key derived from that refresh token: only a caller who holds
 * the old refresh token can read it back, so the store still holds nothing
 * that works as a token.
 */
export interface IssuedPair {
  readonly accessToken: string;
  readonly accessExpiresAt: number;
  readonly refreshToken: string;
}

function graceKey(refreshToken: string): Buffer {
  return Buffer.from(hkdfSync('sha256', refreshToken, '', 'forgejo-mcp-broker refresh grace v1', 32));
}

export function sealPairForGrace(previousRefreshToken: string, pair: IssuedPair): string {
  return seal(graceKey(previousRefreshToken), JSON.stringify(pair), sha256Hex(previousRefreshToken));
}

export function openGracePair(previousRefreshToken: string, sealed: string): IssuedPair {
  return JSON.parse(open(graceKey(previousRefreshToken), sealed, sha256Hex(previousRefreshToken))) as IssuedPair;
}
