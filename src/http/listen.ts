import { ConfigError, type ListenAddress } from '../config/config.js';
import type { Variable } from '../config/options.js';

/** Why a listen failed, when the address is the operator's choice to fix. */
const ADDRESS_PROBLEMS: Readonly<Record<string, string>> = {
  EADDRINUSE: 'is already in use by another process; stop it or choose another port',
  EADDRNOTAVAIL: 'is not an address of this machine',
  EACCES: 'needs privileges this process lacks (ports below 1024); choose a port above 1023',
};

/**
 * Turns a failed listen on a configured address into a ConfigError naming
 * the variable that chose it (`BROKER_LISTEN: 127.0.0.1:8080 is already in
 * use…`); any other failure is returned as it is.
 */
export function listenFailure(variable: Variable, address: ListenAddress, error: unknown): Error {
  const code = error instanceof Error && 'code' in error ? String(error.code) : '';
  const problem = ADDRESS_PROBLEMS[code];
  if (problem === undefined) return error instanceof Error ? error : new Error(String(error));
  const shown = address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
  return new ConfigError(variable, `${shown} ${problem} (${code})`);
}
