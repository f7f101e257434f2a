import type { ChildProcess } from 'node:child_process';

/**
 * Signals a process started with `detached: true` together with its process
 * group, so what it started stops with it; false when there is no group (any
 * more), and then the process alone is signalled.
 */
export function signalProcessGroup(proc: ChildProcess, signal: NodeJS.Signals): boolean {
  const pid = proc.pid;
  if (pid !== undefined) {
    try {
      process.kill(-pid, signal);
      return true;
    } catch {
      // no group: fall through to the process itself
    }
  }
  proc.kill(signal);
  return false;
}

/** Whether `settled` settles within `ms`. */
export function settlesWithin(settled: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    void settled.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
