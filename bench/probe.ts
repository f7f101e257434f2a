/**
 * Loaded into a measured process with `node --import dist/bench/probe.js`:
 * over the IPC channel the harness opened, it answers memory questions
 * (after a full GC when the process runs with --expose-gc), writes heap
 * snapshots and CPU profiles on request. It changes nothing else in the
 * process, and when the harness goes away (the channel closes) it asks the
 * process to stop gracefully, so no measured process outlives the harness.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { writeHeapSnapshot } from 'node:v8';

interface ProbeRequest {
  readonly id: number;
  readonly command: string;
  readonly path?: string;
}

let profiler: Session | undefined;

async function answer(request: ProbeRequest): Promise<Record<string, unknown>> {
  switch (request.command) {
    case 'memory': {
      const gc = (globalThis as { gc?: () => void }).gc;
      if (gc !== undefined) {
        gc();
        await new Promise((resolve) => setImmediate(resolve));
        gc();
      }
      return { ...process.memoryUsage(), gc: gc !== undefined };
    }
    case 'heap-snapshot':
      return { path: writeHeapSnapshot(request.path) };
    case 'cpu-start':
      profiler = new Session();
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.setSamplingInterval', { interval: 200 });
      await profiler.post('Profiler.start');
      return {};
    case 'cpu-stop': {
      if (profiler === undefined) return { error: 'not profiling' };
      const { profile } = await profiler.post('Profiler.stop');
      profiler.disconnect();
      profiler = undefined;
      if (request.path !== undefined) writeFileSync(request.path, JSON.stringify(profile));
      return { path: request.path };
    }
    default:
      return { error: `unknown command ${request.command}` };
  }
}

if (process.send !== undefined) {
  process.on('message', (message: ProbeRequest) => {
    answer(message).then(
      (reply) => process.send?.({ id: message.id, ...reply }),
      (error: unknown) => process.send?.({ id: message.id, error: String(error) }),
    );
  });
  process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}
